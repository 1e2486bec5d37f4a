#include "core/backend.h"
#include "core/log.h"
#include "core/op_profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int created(int rc, sw_backend **out)
{
	if (rc)
		return rc;
	if ((rc = sw_op_profile_maybe_wrap(*out))) {
		sw_backend_destroy(*out);
		*out = NULL;
	}
	return rc;
}

int sw_backend_create(const char *name, const sw_backend_opts *o, sw_backend **out)
{
	if (!strcmp(name, "cpu"))
		return created(sw_cpu_backend_create(o, out), out);
	if (!strcmp(name, "cuda")) {
		if (sw_cuda_device_count() <= 0) {
			sw_error("backend cuda: no usable GPU (this build %s CUDA); use --backend cpu",
#ifdef SW_HAVE_CUDA
				 "has"
#else
				 "was made without"
#endif
			);
			return -ENODEV;
		}
		return created(sw_cuda_backend_create(o, out), out);
	}
	if (!strcmp(name, "auto"))
		return sw_backend_create(sw_cuda_device_count() > 0 ? "cuda" : "cpu", o, out);
	sw_error("backend '%s' is unknown; use cpu, cuda or auto", name);
	return -EINVAL;
}

int sw_test_grad_fill_nan(void)
{
	const char *e = getenv("SW_TEST_GRAD_FILL_NAN");
	return !e ? 0 : !strcmp(e, "1") ? 1 : !strcmp(e, "control") ? 2 : 0;
}

void sw_fill_nan(sw_backend *be, sw_stream *s, void *dst, uint64_t bytes)
{
	/* all ones: a NaN as fp32, bf16 or fp64. The copies are queued on s from this block, which
	 * lives as long as the program, so they may run after this returns */
	static unsigned char ones[1 << 16];
	static int filled;
	if (!filled) {
		memset(ones, 0xff, sizeof(ones));
		filled = 1;
	}
	for (uint64_t at = 0; at < bytes; at += sizeof(ones)) {
		uint64_t n = bytes - at < sizeof(ones) ? bytes - at : sizeof(ones);
		be->ops->copy_h2d(be, s, (char *)dst + at, ones, n);
	}
}

void sw_backend_destroy(sw_backend *be)
{
	if (be)
		be->ops->destroy(be);
}
