// zlib, for reading and writing .gz data files.
#include <zlib.h>
