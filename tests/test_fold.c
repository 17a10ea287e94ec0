#include "suites.h"
Suite *tl_fold_suite(void) { return suite_create("fold"); }
