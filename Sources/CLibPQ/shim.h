#ifndef CUTOVER_CLIBPQ_SHIM_H
#define CUTOVER_CLIBPQ_SHIM_H

#include <libpq-fe.h>

// Swift does not import character-literal macros: copies of the diagnostic field codes.
static const int CLIBPQ_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int CLIBPQ_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int CLIBPQ_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int CLIBPQ_DIAG_MESSAGE_HINT = PG_DIAG_MESSAGE_HINT;
static const int CLIBPQ_DIAG_SEVERITY = PG_DIAG_SEVERITY;

#endif
