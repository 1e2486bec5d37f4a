#include "core/backend.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

int sw_backend_create(const char *name, const sw_backend_opts *o, sw_backend **out)
{
	if (!strcmp(name, "cpu"))
		return sw_cpu_backend_create(o, out);
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
		return sw_cuda_backend_create(o, out);
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
