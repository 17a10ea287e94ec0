/*
 * error.c -- text for the error codes declared in error.h.
 */
#include "error.h"

const char *tl_strerror(int err) {
    switch (err) {
    case TL_OK: return "success";
#define TL_ERR_STR(name, code, msg) case TL_E##name: return msg;
    TL_ERR_MAP(TL_ERR_STR)
#undef TL_ERR_STR
    }
    return "unknown error";
}

const char *tl_err_name(int err) {
    switch (err) {
    case TL_OK: return "TL_OK";
#define TL_ERR_NAME(name, code, msg) case TL_E##name: return "TL_E" #name;
    TL_ERR_MAP(TL_ERR_NAME)
#undef TL_ERR_NAME
    }
    return "TL_EUNKNOWN";
}
