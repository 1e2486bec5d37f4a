/* The LoRA executor: training adapters on a frozen base whose P16 lives where the LoRA planner
 * (offload/plan_lora.h) put it: resident on the device, in pinned host memory, or on NVMe (one
 * extent per group, written once at load, only read after). No P32, Adam state or gradient
 * exists for the base. Each layer's adapters (fp32 master, m, v, gradient, compute copy) live on
 * the device (device AdamW) or in host memory (CPU AdamW; their compute copy goes to the device
 * with the layer, their gradient back to the host after the layer's backward).
 *
 * A step, in the same order whatever the placement (so the adapters come out bit-identical):
 * forward layer-major over the M micro-batches, every layer input kept as a checkpoint (on the
 * device, in pinned host memory or on NVMe, as the plan says), the carry where it says; the
 * head's loss and its gradient; backward top-down, each layer recomputed from its checkpoint,
 * input gradients through the frozen base, gradients for the adapters only; then the global
 * norm over every adapter gradient (optim/clip.h, per layer in layer order), the clip scale,
 * and AdamW on every adapter tensor. The adapters' gradients are all held until the norm is
 * known, so clipping costs no second pass.
 *
 * The transfers overlap the compute (offload/lora_window.c): a streamed group is copied to one
 * of two device buffers on a copy stream once the buffer's previous use is released; from NVMe
 * it is read asynchronously in chunks into a ring of pinned stages, as far ahead as the stages
 * allow, each chunk copied once read; spilled checkpoints are written behind the forward through
 * a ring of pinned stages and read ahead of the backward in its order. The executor's thread
 * moves these on whenever it passes by or would wait (lexec_pump); it never waits for a
 * transfer that something else could run beside. docs/lora.md. */
#ifndef SW_OFFLOAD_LORA_EXEC_H
#define SW_OFFLOAD_LORA_EXEC_H
#include <stdint.h>
#include "core/backend.h"
#include "core/hfmodel.h"
#include "io/io.h"
#include "offload/lora.h"
#include "offload/plan_lora.h"
#include "offload/trainer.h"
#include "optim/adamw.h"

typedef struct sw_lexec sw_lexec;

typedef struct sw_lexec_opts {
	sw_adamw_hparams adam;
	double clip;
	sw_lora_layout lo;
} sw_lexec_opts;

/* Where the base comes from: elements [off, off + n) of group g's layer-major block as
 * dst_dtype elements (for a model directory, sw_hf_read_range). */
typedef void (*sw_lexec_reader)(const void *src, int g, int64_t off, int64_t n, void *dst,
				sw_dtype dst_dtype);
void sw_lexec_read_hf(const void *hf_model, int g, int64_t off, int64_t n, void *dst,
		      sw_dtype dst_dtype);

/* Allocates what the plan places (device arena, pinned host, NVMe extents through io, which may
 * be NULL when nothing is on NVMe) and loads the base's P16 (read(src, g, ...)) into its homes.
 * The adapters start at zero: set them with sw_lexec_set_layer. 0 or -errno after one error
 * line. */
int sw_lexec_create(sw_backend *be, sw_lexec_reader read, const void *src, const sw_plan_lora *p,
		    sw_io *io, const sw_lexec_opts *o, sw_lexec **out);
void sw_lexec_destroy(sw_lexec *ex);

/* Layer l's (0-based) adapters: P32 from p32 (its compute copy rounded from it), m and v from
 * m and v (NULL: zeros). lo.numel floats each. */
void sw_lexec_set_layer(sw_lexec *ex, int l, const float *p32, const float *m, const float *v);
/* P32, M, V or GRAD of layer l's adapters into dst (lo.numel floats). */
void sw_lexec_get_layer(sw_lexec *ex, int l, sw_state state, float *dst);

/* One optimizer step (as sw_exec_step: inputs, targets (M, rows, T) int32 host; step AdamW's
 * t). 0 or -errno (NVMe). */
int sw_lexec_step(sw_lexec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		  double lr, sw_step_stats *st);
/* The summed loss of one batch (as sw_lexec_step takes it) under the current adapters: forward
 * and head only, nothing updated. 0 or -errno. */
int sw_lexec_eval(sw_lexec *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum);
#endif
