/* placeholder until written */
#include "suites.h"
Suite *tl_codec_suite(void) { return suite_create("codec"); }
