#!/usr/bin/env python3
"""Writes message_received.bin: one threadline.Event in Avro single-object
encoding, produced with fastavro (not with threadline's own codec), so that
tests/test_codec.c checks that we read what another implementation writes.

    python3 -m pip install fastavro
    python3 tests/data/make_golden.py schemas/event.avsc tests/data/message_received.bin

Generated with fastavro 1.13.1.  The expected field values are repeated in test_codec.c
(codec_reads_record_written_by_fastavro); change both together.
"""
import io
import json
import struct
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

EVENT = {
    "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
    "tenant_id": "tenant-hz-01",
    "customer_id": "c-5f2a9e",
    "platform": "MINI_PROGRAM",
    "platform_user_id": "oX9a_mini_7781",
    "idempotency_key": "mini_program:msg-20240518-0001",
    "occurred_at": 1716019200123,
    "received_at": 1716019200456,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "payload": ("threadline.MessageReceived", {
        "text": "你好，我昨天下的订单还没有发货，订单号是 TL20240518001，请帮我查一下物流。",
        "attachments": [
            {"url": "https://img.example.cn/u/7781/screenshot.png", "mime": "image/png",
             "bytes": 482113, "width": 1080, "height": None},
        ],
        "entry_point": "product-detail:SKU123",
        "device_id": None,
    }),
}


def main():
    schema_path, out_path = sys.argv[1], sys.argv[2]
    with open(schema_path, encoding="utf-8") as f:
        schema_json = json.load(f)
    schema = fastavro.parse_schema(schema_json)
    # fastavro returns the fingerprint as the hex of its little-endian bytes,
    # which is exactly the header's byte order.
    fp = bytes.fromhex(fingerprint(
        to_parsing_canonical_form(schema_json), "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, EVENT)
    with open(out_path, "wb") as f:
        f.write(b"\xc3\x01" + fp + body.getvalue())
    print("%s: %d bytes, fingerprint 0x%016x" % (out_path, 10 + len(body.getvalue()),
                                                 struct.unpack("<Q", fp)[0]))


if __name__ == "__main__":
    main()
