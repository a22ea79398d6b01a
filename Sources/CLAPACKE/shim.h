// LAPACK's C interface (sgesdd, sgeqrf, spotrf, strtri, ...).
#include <lapacke.h>
