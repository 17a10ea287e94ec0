#include "suites.h"
Suite *tl_ingest_suite(void) { return suite_create("ingest"); }
