// Umbrella header of the C kernel target.
#include "lq_cpu.h"
#include "lq_convert.h"
#include "lq_quant.h"
#include "lq_activations.h"
#include "lq_cuda.h"
#include "lq_device_ops.h"
#include "lq_pool.h"
#include "lq_files.h"
