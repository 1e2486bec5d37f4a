#include "core/backend.h"
#include "core/log.h"
#include "core/op_profile.h"

#include <errno.h>
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

void sw_backend_destroy(sw_backend *be)
{
	if (be)
		be->ops->destroy(be);
}
