/* Issue 18, Done when 1 and 2. Parity: LoRA adapters trained by the LoRA executor (fp32, CPU
 * backend) on the bases and tokens of the PyTorch golden files (tests/ref/make_golden.py) match
 * tests/ref/lora_ref.py (plain PyTorch + HF transformers, the LoRA formula, torch AdamW,
 * clip_grad_norm_) after 3 steps: loss within 1e-5, gradient norm within 1e-4, adapters within
 * 1e-5 of the float64 run or no further from it than twice the spread of valid PyTorch fp32
 * runs: the worst error among fp32 runs that differ only in the order of their sums (threads,
 * sequence order, micro-batches; tests/ref/lora_ref.py and lora_spread.py), or lora_ref.py's
 * single fp32 run's where a golden has no spread (the rule of tests/test_offload_exec_golden.c).
 * The reference starts from spillway's initial adapters (PEFT's initialisation drawn from
 * --seed 0 by our RNG), committed as tests/ref/lora_init_NAME.safetensors and checked here to be what the executor draws.
 * Placement: the same steps with the base all on the device, all in host memory and all on NVMe
 * (adapters on the device, then in host memory; checkpoints and the carry on the device, half,
 * none) give bit-identical adapters, m and v.
 * `test_offload_lora_golden --write-init` rewrites the init files (for lora_ref.py).
 * SW_TEST_BACKEND=cuda (tests/gpu/test_offload_lora_gpu.sh) runs the placement invariance on the
 * GPU, where the base's fetches overlap compute on another stream. */
#include "tests/offload_exec_harness.h"
#include "core/config.h"
#include "core/safetensors.h"
#include "offload/lora_exec.h"
#include "offload/lora_train.h"
#include "tests/golden.h"

#include <math.h>

typedef struct lcase { const char *name; int rank; double alpha; const char *targets; } lcase;
static const lcase cases[] = {
	{ "llama_gqa", 4, 8.0, "q,k,v,o,gate,up,down" },
	{ "qwen2_tied", 8, 4.0, "q,k,v,o,gate,up,down" },
	{ "llama3_odd", 5, 7.5, "q,v,o,down" },
};

typedef struct src { golden *gd; const sw_table *tt; } src;

/* elements [off, off + n) of group g's block from the golden file's initial parameters */
static void read_golden(const void *vs, int g, int64_t off, int64_t n, void *dst, sw_dtype dt)
{
	const src *s = vs;
	const sw_table *tt = s->tt;
	for (int i = tt->g[g].first; i < tt->g[g].first + tt->g[g].count; i++) {
		const sw_tensor *t = &tt->t[i];
		int64_t lo = t->offset > off ? t->offset : off;
		int64_t hi = t->offset + t->numel < off + n ? t->offset + t->numel : off + n;
		if (lo >= hi)
			continue;
		char name[128];
		int64_t cnt = 0;
		snprintf(name, sizeof(name), "param:%s", t->name);
		float *p = golden_array(s->gd, name, &cnt);
		CHECKF(p && cnt == t->numel, "%s", name);
		sw_convert((char *)dst + (lo - off) * sw_dtype_size(dt), dt, p + (lo - t->offset),
			   SW_DTYPE_F32, hi - lo);
	}
}

typedef struct setup {
	golden gd;
	sw_table tt;
	sw_lora_layout lo;
	sw_plan_input in;
	int B, T;
	sw_adamw_hparams h;
	double clip, lr;
} setup;

static void setup_open(setup *s, const lcase *c)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/ref/golden_%s.bin", c->name);
	CHECKF(golden_open(&s->gd, path) == 0, "%s", path);
	char *cj = json_dumps(json_object_get(s->gd.hdr, "config"), 0);
	sw_config cfg;
	CHECK(sw_config_parse(&cfg, cj, strlen(cj), path) == 0);
	free(cj);
	CHECK(sw_table_build(&s->tt, &cfg) == 0);
	s->B = (int)json_integer_value(json_object_get(s->gd.hdr, "B"));
	s->T = (int)json_integer_value(json_object_get(s->gd.hdr, "T"));
	unsigned mask;
	char why[256];
	CHECK(sw_lora_targets_parse(c->targets, &mask, why, sizeof(why)) == 0);
	sw_lora_layout_make(&s->lo, &cfg, c->rank, mask, c->alpha);
	hx_input(&s->in, &s->tt, 2, s->T, 1, 2048);
	s->in.micro_rows = s->B / 2;
	s->in.batch_tokens = (int64_t)s->B * s->T;
	s->in.lora_rank = c->rank;
	s->in.lora_targets = mask;
	s->in.gpu_mem = 1ull << 40;
	s->in.cpu_mem = 1ull << 40;
	/* the LoRA golden's optimizer settings (tests/ref/lora_ref.py LTRAIN) */
	s->h = (sw_adamw_hparams){ .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 };
	s->clip = 0.05;
	s->lr = 1e-2;
}

static void setup_close(setup *s)
{
	sw_table_free(&s->tt);
	golden_close(&s->gd);
}

/* Trains 3 steps with the base on tier `base`, the adapters on tier `ad`, `ck` layer inputs
 * (top first) on the device, `ckh` after them in host memory, the rest on NVMe (with the base
 * there, else in host memory) and, with carry 1, the carry on the device; the adapters' P32, m,
 * v after them into out (3 x L x numel), losses and norms into st. */
static void run(setup *s, sw_tier base, sw_tier ad, int64_t ck, int64_t ckh, int carry,
		float *out, sw_step_stats st[3], float *init)
{
	sw_plan_lora p;
	CHECKF(sw_plan_lora_build(&p, &s->in) == 0, "%s", p.why);
	for (int g = 0; g < p.ngroups; g++) {
		p.base_tier[g] = base;
		p.adapter_tier[g] = ad;
	}
	p.ckpt_count[SW_TIER_GPU] = ck;
	p.ckpt_count[SW_TIER_HOST] = ckh;
	p.carry_on_gpu = carry;
	sw_backend_opts bo = { .mem_budget = 1ull << 30, .act = SW_DTYPE_F32, .threads = 2 };
	sw_backend *be;
	CHECK(sw_backend_create(hx_backend(), &bo, &be) == 0);
	sw_io *io = NULL;
	if (base == SW_TIER_NVME) {
		/* 16 KiB stripes: the base is read in chunks of 16 KiB, several per group, more
		 * than the stages hold */
		sw_io_config ic = { .paths = hx_nvme_dir(), .quiet = 1, .file_name = "lora-test.data",
				    .size = 64ull << 20, .stripe = 16ull << 10 };
		CHECK(sw_io_open(&ic, &io) == 0);
	}
	src sr = { &s->gd, &s->tt };
	sw_lexec_opts eo = { .adam = s->h, .clip = s->clip, .lo = s->lo };
	sw_lexec *ex;
	CHECK(sw_lexec_create(be, read_golden, &sr, &p, io, &eo, &ex) == 0);
	int L = p.n_layers;
	int64_t n = s->lo.numel;
	for (int l = 0; l < L; l++) {
		sw_lora_init_layer(&s->lo, 0, l, init + l * n);
		sw_lexec_set_layer(ex, l, init + l * n, NULL, NULL);
	}
	for (int step = 1; step <= 3; step++) {
		char ni[32], nt[32];
		snprintf(ni, sizeof(ni), "step%d:inputs", step);
		snprintf(nt, sizeof(nt), "step%d:targets", step);
		CHECK(sw_lexec_step(ex, golden_array(&s->gd, ni, NULL), golden_array(&s->gd, nt, NULL),
				    step, s->lr, &st[step - 1]) == 0);
	}
	const sw_state states[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };
	for (int k = 0; k < 3; k++)
		for (int l = 0; l < L; l++)
			sw_lexec_get_layer(ex, l, states[k], out + ((int64_t)k * L + l) * n);
	sw_lexec_destroy(ex);
	sw_io_close(io);
	sw_backend_destroy(be);
	sw_plan_lora_free(&p);
}

/* init (L x numel) as tests/ref/lora_init_NAME.safetensors, under PEFT's names */
static void write_init(const setup *s, const lcase *c, const float *init, int L)
{
	char dir[256], file[300], dst[256], cmd[600];
	snprintf(dir, sizeof(dir), "tests/ref/lora_init_%s.dir", c->name);
	snprintf(file, sizeof(file), "%s/model.safetensors", dir);
	snprintf(dst, sizeof(dst), "tests/ref/lora_init_%s.safetensors", c->name);
	sw_st_writer *w;
	CHECK(sw_st_writer_begin(&w, dir, 0) == 0);
	for (int l = 0; l < L; l++)
		for (int k = 0; k < SW_LORA_NTARGETS; k++)
			for (int ab = 0; ab < 2 && sw_lora_has(&s->lo, k); ab++) {
				char name[160];
				int64_t sh[2] = { ab ? s->lo.out[k] : s->lo.rank, ab ? s->lo.rank : s->lo.in[k] };
				sw_lora_peft_name(name, sizeof(name), l, k, ab);
				CHECK(sw_st_writer_declare(w, name, SW_DTYPE_F32, 2, sh) == 0);
			}
	CHECK(sw_st_writer_write(w, init, SW_DTYPE_F32, (int64_t)L * s->lo.numel) == 0);
	CHECK(sw_st_writer_finish(w, NULL) == 0);
	CHECK(rename(file, dst) == 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	printf("wrote %s\n", dst);
}

/* the executor's initial adapters are the committed file's, bit for bit */
static void check_init(const setup *s, const lcase *c, const float *init, int L)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/ref/lora_init_%s.safetensors", c->name);
	sw_st_file f;
	CHECKF(sw_st_open(&f, path) == 0, "%s", path);
	float *buf = malloc((size_t)s->lo.numel * 4);
	for (int l = 0; l < L; l++) {
		CHECK(sw_lora_read_layer(&f, &s->lo, l, "", buf) == 0);
		CHECKF(!memcmp(buf, init + l * s->lo.numel, (size_t)s->lo.numel * 4),
		       "%s: layer %d differs from what --seed 0 draws", path, l);
	}
	free(buf);
	sw_st_close(&f);
}

static double worst, worst_bk;

static void check_golden(const setup *s, const lcase *c, const float *p32, const sw_step_stats *st,
			 int L)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/ref/lora_golden_%s.bin", c->name);
	golden lg;
	CHECKF(golden_open(&lg, path) == 0, "%s (tests/ref/lora_ref.py writes it)", path);
	float *losses = golden_array(&lg, "losses", NULL), *norms = golden_array(&lg, "grad_norms", NULL);
	CHECK(losses && norms);
	for (int i = 0; i < 3; i++) {
		double el = fabs(st[i].loss - losses[i]) / fabs(losses[i]);
		double en = fabs(st[i].grad_norm - norms[i]) / norms[i];
		printf("  step %d: loss %.7f (torch %.7f, rel %.1e) grad norm %.6g (torch %.6g, rel "
		       "%.1e)%s\n", i + 1, st[i].loss, losses[i], el, st[i].grad_norm, norms[i], en,
		       st[i].grad_scale < 1 ? " clipped" : "");
		CHECK(el < 1e-5);
		CHECK(en < 1e-4);
	}
	for (int l = 0; l < L; l++)
		for (int k = 0; k < SW_LORA_NTARGETS; k++)
			for (int ab = 0; ab < 2 && sw_lora_has(&s->lo, k); ab++) {
				char pn[160], n32[192], n64[192];
				sw_lora_peft_name(pn, sizeof(pn), l, k, ab);
				snprintf(n32, sizeof(n32), "after3:%s", pn);
				snprintf(n64, sizeof(n64), "after3_f64:%s", pn);
				int64_t n = 0;
				float *r32 = golden_array(&lg, n32, &n), *r64 = golden_array(&lg, n64, NULL);
				CHECKF(r32 && r64, "%s: %s", path, n32);
				const float *mine = p32 + l * s->lo.numel + (ab ? s->lo.off_b[k] : s->lo.off_a[k]);
				double err = check_rel_err_f32(mine, r64, (long)n);
				double et = check_rel_err_f32(r32, r64, (long)n);
				/* where the reference has it: the worst error among its fp32 runs that differ
				 * only in the order of their sums (tests/ref/lora_ref.py, lora_spread.py), the
				 * spread valid fp32 results have; one run's error alone is a single draw of it */
				char ns[192];
				snprintf(ns, sizeof(ns), "after3_fp32_spread:%s", pn);
				float *sp = golden_array(&lg, ns, NULL);
				if (sp && sp[0] > et)
					et = sp[0];
				CHECKF(err < 1e-5 || err <= 2 * et, "%s: rel err %.2e vs float64 (torch fp32 "
				       "%.2e)", n32, err, et);
				if (err >= 1e-5 && err > worst_bk)
					worst_bk = err;
				if (err < 1e-5 && err > worst)
					worst = err;
			}
	golden_close(&lg);
}

static void check_case(const lcase *c, int write)
{
	setup s;
	setup_open(&s, c);
	int L = (int)s.tt.cfg.n_layers;
	int64_t n = s.lo.numel * L;
	float *ref = malloc((size_t)n * 12), *got = malloc((size_t)n * 12), *init = malloc((size_t)n * 4);
	sw_step_stats st[3], st2[3];
	printf("%s: rank %d, alpha %g, targets %s; %lld adapter parameters\n", c->name, c->rank,
	       c->alpha, c->targets, (long long)n);
	int64_t nck = (int64_t)L * (s.B * s.T / (s.in.micro_rows * s.T));
	run(&s, SW_TIER_GPU, SW_TIER_GPU, nck, 0, 1, ref, st, init);
	if (write) {
		write_init(&s, c, init, L);
		goto out;
	}
	int cpu = !strcmp(hx_backend(), "cpu");
	if (cpu)
		check_init(&s, c, init, L);
	for (int i = 0; i < 3; i++)
		printf("  step %d: loss %.7f grad norm %.6g\n", i + 1, st[i].loss, st[i].grad_norm);
	const sw_tier places[3][2] = { { SW_TIER_HOST, SW_TIER_GPU }, { SW_TIER_NVME, SW_TIER_GPU },
				       { SW_TIER_NVME, SW_TIER_HOST } };
	const char *pn[3] = { "base in host memory, half the checkpoints on the device",
			      "base and checkpoints on NVMe, carry in host memory",
			      "base on NVMe, adapters, checkpoints and carry in host memory" };
	const int64_t cks[3] = { nck / 2, 0, 0 }, ckh[3] = { nck, 0, nck };
	for (int i = 0; i < 3; i++) {
		run(&s, places[i][0], places[i][1], cks[i], ckh[i], i == 0, got, st2, init);
		CHECKF(!memcmp(ref, got, (size_t)n * 12), "%s: %s: adapters differ from the base on the "
		       "device", c->name, pn[i]);
		for (int k = 0; k < 3; k++)
			CHECK(st2[k].loss == st[k].loss && st2[k].grad_norm == st[k].grad_norm);
		printf("  %s: P32, m, v bit-identical to the base on the device\n", pn[i]);
	}
	if (cpu)   /* the golden tolerances are the CPU backend's (fp32 reference) */
		check_golden(&s, c, ref, st, L);
out:
	free(ref);
	free(got);
	free(init);
	setup_close(&s);
}

int main(int argc, char **argv)
{
	(void)hx_open;
	(void)hx_close;
	int write = argc > 1 && !strcmp(argv[1], "--write-init");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], write);
	if (!write)
		printf("worst adapter error after 3 steps vs float64: %.2e (limit 1e-5); above it but "
		       "within 2x the spread of PyTorch's fp32 runs: worst %.2e\n", worst, worst_bk);
	return 0;
}
