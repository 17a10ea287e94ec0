/*
 * config.h -- threadline's configuration: one table, three sources.
 *
 * Each setting has one name used everywhere: the flag `--kafka-brokers`, the
 * environment variable `TL_KAFKA_BROKERS`, the field `kafka_brokers`.  Order
 * of precedence: built-in default < environment < command line.  Keeping the
 * settings in a single X-macro table means `--help`, parsing and defaults
 * cannot disagree.
 */
#ifndef TL_CONFIG_H
#define TL_CONFIG_H

#include <stdint.h>
#include <stdio.h>

/* XX(field, flag, type, default, help); type is STR, INT or BOOL (a BOOL flag
 * alone means 1; --name=0 turns it off). */
#define TL_CONFIG_MAP(XX)                                                                 \
    XX(kafka_brokers, "kafka-brokers", STR, "127.0.0.1:9092",                             \
       "Kafka bootstrap servers, or \"embedded\" for librdkafka's in-process mock "       \
       "(memory only: never for durability claims). Alias: --kafka")                     \
    XX(pg_dsn, "pg-dsn", STR, "host=127.0.0.1 dbname=threadline user=postgres",           \
       "PostgreSQL connection string (libpq)")                                            \
    XX(http, "http", STR, "127.0.0.1:8080", "address to serve HTTP on, HOST:PORT")         \
    XX(prefix, "prefix", STR, "tl", "topic and consumer-group prefix")                     \
    XX(partitions, "partitions", INT, "12", "partitions of the topics when created")       \
    XX(max_body, "max-body", INT, "1048576", "largest request body accepted, bytes")       \
    XX(max_skew_ms, "max-skew-ms", INT, "300000",                                          \
       "how far a client clock may run behind the gateway before it is clamped")          \
    XX(max_customers, "max-customers", INT, "1000000",                                     \
       "customer states a fold worker keeps in memory; beyond it the least recently "     \
       "used are evicted and read back from <prefix>.state when they next appear")        \
    XX(key_fields, "key-fields", STR, "order_no,phone,email",                              \
       "comma-separated business fields where a different value opens a conflict "        \
       "for an agent instead of overwriting")                                             \
    XX(idle_timeout_ms, "idle-timeout-ms", INT, "1800000",                                 \
       "inactivity after which a message opens a new conversation")                       \
    XX(ack_timeout_ms, "ack-timeout-ms", INT, "10000",                                     \
       "longest ingest waits for the broker before answering 503")                        \
    XX(fold, "fold", INT, "1", "run a fold worker in this process (0/1)")                  \
    XX(project, "project", INT, "1", "run the projection workers in this process (0/1)")   \
    XX(views, "views", STR, "all",                                                         \
       "the projection workers this process runs, e.g. \"agent,wechat\"; \"all\": agent, web, " \
       "app, mini_program, wechat, douyin and phone")                                     \
    XX(platform, "platform", STR, "",                                                      \
       "rebuild: the view to rebuild (agent, web, app, mini_program, wechat, douyin, phone)") \
    XX(profiles, "profiles", STR, "",                                                      \
       "directory of platform profiles (<platform>.json) that replace the built-in ones " \
       "of schemas/platforms; empty: the built-in ones")                                  \
    XX(batch, "batch", INT, "500", "largest batch a worker processes per transaction")     \
    XX(project_concurrency, "project-concurrency", INT, "0",                               \
       "most projection batches in PostgreSQL at once in this process, the agent view's "  \
       "first; 0: the number of CPUs; -1: no limit")                                      \
    XX(batch_ms, "batch-ms", INT, "20",                                                    \
       "how long a worker keeps gathering a batch after its first record: bigger "        \
       "batches mean fewer transactions, at this much added latency")                     \
    XX(instance, "instance", STR, "0",                                                     \
       "this process's stable name among its peers; names its transactional id, so a "    \
       "restarted process fences its crashed predecessor and aborts its open transaction")\
    XX(quotas, "quotas", STR, "",                                                          \
       "per-platform ingest rates and priorities, e.g. \"douyin=500:low,web=2000:high\"; "  \
       "beyond its rate a platform gets 429 with Retry-After")                            \
    XX(ingest_capacity, "ingest-capacity", INT, "0",                                       \
       "events per second the gateway accepts in all; as it fills, low-priority platforms " \
       "are refused first (0: no shared limit)")                                          \
    XX(douyin_secret, "douyin-secret", STR, "",                                            \
       "Douyin webhook signing secret (the app's client secret); empty: no "             \
       "/v1/ingest/douyin")                                                              \
    XX(douyin_tenant, "douyin-tenant", STR, "default",                                     \
       "tenant the Douyin app's customers belong to")                                     \
    XX(phone_country_code, "phone-country-code", STR, "86",                                \
       "country calling code put in front of national caller numbers")                    \
    XX(wechat_token, "wechat-token", STR, "",                                              \
       "WeChat Official Account Token; empty = no /v1/ingest/wechat")                     \
    XX(wechat_aes_key, "wechat-aes-key", STR, "",                                          \
       "WeChat EncodingAESKey (43 chars): safe mode; needs --wechat-appid")               \
    XX(wechat_appid, "wechat-appid", STR, "", "WeChat AppID, checked in safe mode")        \
    XX(wechat_tenant, "wechat-tenant", STR, "default",                                     \
       "tenant the WeChat Official Account's customers belong to")                        \
    XX(identity, "identity", INT, "1",                                                     \
       "run the identity index writer in this process (0/1)")                             \
    XX(identity_cache, "identity-cache", INT, "100000",                                    \
       "identities ingest keeps resolved in memory (least recently used go first)")       \
    XX(identity_ttl_ms, "identity-ttl-ms", INT, "2000",                                    \
       "how long a resolved identity is trusted before PostgreSQL is asked again")      \
    XX(auth, "auth", STR, "required",                                                      \
       "\"required\": every REST call needs a bearer key (threadline keys); \"off\": "      \
       "no checks, every caller is an admin -- UNSAFE, for local trials and tests only")    \
    XX(stream_buffer, "stream-buffer", INT, "262144",                                      \
       "bytes of changes a /v1/stream client may fall behind before it is disconnected") \
    XX(customer, "customer", STR, "",                                                      \
       "replay/state/audit/export: the customer id to read (its partition and key only)")  \
    XX(conversation, "conversation", STR, "", "audit: one conversation's account")        \
    XX(as_of, "as-of", STR, "",                                                            \
       "replay/state: only events received at or before this time (RFC 3339 or epoch ms)") \
    XX(from, "from", STR, "",                                                              \
       "replay: start offsets of .events, PARTITION:OFFSET,... (others from the beginning)") \
    XX(json, "json", BOOL, "0", "verify/state/audit/replay: print JSON instead of text")    \
    XX(scratch_schema, "scratch-schema", STR, "",                                          \
       "replay: also write the replayed customers, conversations and items to this new "   \
       "PostgreSQL schema (created; never an existing one)")

typedef struct tl_config {
#define TL_CONFIG_FIELD_STR(f) const char *f;
#define TL_CONFIG_FIELD_INT(f) int64_t f;
#define TL_CONFIG_FIELD_BOOL(f) int64_t f;
#define TL_CONFIG_FIELD(f, flag, type, def, help) TL_CONFIG_FIELD_##type(f)
    TL_CONFIG_MAP(TL_CONFIG_FIELD)
#undef TL_CONFIG_FIELD
#undef TL_CONFIG_FIELD_STR
#undef TL_CONFIG_FIELD_INT
#undef TL_CONFIG_FIELD_BOOL
} tl_config_t;

/* Fills cfg with the defaults, then the TL_* environment.  Strings point to
 * static or environment storage.  TL_ECONFIG if an environment value is not
 * a valid number (message on stderr).  Main thread, before other threads. */
int tl_config_init(tl_config_t *cfg);

/* Applies the flags in argv[*i] (and its value); on success advances *i past
 * what it consumed and returns 1; returns 0 if argv[*i] is not a config
 * flag; TL_ECONFIG on a missing or bad value (message on stderr).
 * Accepts "--name value" and "--name=value".  Strings point into argv. */
int tl_config_flag(tl_config_t *cfg, int argc, char **argv, int *i);

/* Prints the config flags, with their environment names and defaults. */
void tl_config_usage(FILE *out);

/* 1 if kafka_brokers selects the in-process mock cluster. */
int tl_config_kafka_embedded(const tl_config_t *cfg);

#endif
