/* Batch norm (training) -> ReLU -> 2x2 max-pool (stride 2), forward and backward, fused, on the CPU.

   float32 in the channels_last layout: x[n][h][w][c], the output o[n][h/2][w/2][c]. PyTorch runs
   these as three kernels, each a full pass over memory: the batch norm writes its whole output, the
   ReLU and the max-pool read it back, the pool writes int64 indices, its backward zero-fills a full-size gradient
   before it scatters into it. Here the forward reads x twice (statistics, then normalise + pool +
   ReLU in one pass) and writes two quarters (the output, and each window's x at its maximum); the
   backward reads those quarters, then x once, and writes dx once. The pool is taken before the ReLU
   (relu(max(y)) = max(relu(y)): ReLU is monotone, so the ReLU runs on a quarter of the values). The arithmetic is PyTorch's (same
   formulas, first maximum of a window in the same scan order, no FMA contraction: build with
   -ffp-contract=off, and -fno-trapping-math so that the selects vectorise); the statistics are
   summed in double. Where the output is NaN the gradient passes, as PyTorch's ReLU backward passes
   it wherever its output is not <= 0.
   Each exported function takes the batch's n images and a thread count (its first two arguments) and
   runs chunk t of `threads` (images [n * t / threads, n * (t + 1) / threads)) on OpenMP thread t:
   built with -fopenmp, that is the team PyTorch's own CPU kernels run on (its libgomp, loaded
   already), whose threads wait right behind each PyTorch kernel; built without, the chunks run one
   after another, to the same numbers. Each chunk sums into its own accumulators. */
#include <stdint.h>

/* 1 where this build runs chunks on OpenMP threads, 0 where one after another. */
int bnp_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define FIRST(t) (n * (t) / threads)  /* chunk t's first image */

/* sum[c] += sum of x, sumsq[c] += sum of x^2 over images [n0, n1) and all positions. */
static void stats(int64_t n0, int64_t n1, const float *x, int64_t hw, int64_t C, double *sum, double *sumsq) {
    for (int64_t i = n0 * hw; i < n1 * hw; i++) {
        const float *row = x + i * C;
        for (int64_t c = 0; c < C; c++) {
            double v = row[c];
            sum[c] += v;
            sumsq[c] += v * v;
        }
    }
}

/* One step of a window's scan for its maximum, PyTorch's max-pool order: a later value takes the place
   only if it is larger (so the first maximum wins) or NaN. Selects, not branches: the channel loops
   around it vectorise. */
#define SCAN(y, v, i) { int t_ = (y > best) | (y != y); best = t_ ? y : best; xq = t_ ? v : xq; q = t_ ? i : q; }
/* (q is a float, the window position 0-3: GCC vectorises selects between floats, not int-float mixes) */

/* One 2x2 window, all channels: p0 p1 / p2 p3 point at its four pixels' channel vectors. */
static void forward_window(const float *restrict p0, const float *restrict p1, const float *restrict p2,
                           const float *restrict p3, const float *restrict scale, const float *restrict shift,
                           float *restrict o, float *restrict xsel, int64_t C) {
    for (int64_t c = 0; c < C; c++) {
        float a = scale[c], b = shift[c], v0 = p0[c], v1 = p1[c], v2 = p2[c], v3 = p3[c];
        float best = v0 * a + b, xq = v0, y1 = v1 * a + b, y2 = v2 * a + b, y3 = v3 * a + b;
        float q = 0.0f;
        SCAN(y1, v1, 1.0f) SCAN(y2, v2, 2.0f) SCAN(y3, v3, 3.0f)
        o[c] = best <= 0.0f ? 0.0f : best;  /* ReLU; a NaN stays NaN */
        xsel[c] = xq;
    }
}

/* y = x * scale + shift (the batch norm), o = relu(max of y over each 2x2 window), and the window's
   x at its maximum (xsel, for the backward sums). */
static void forward(int64_t n0, int64_t n1, const float *x, int64_t H, int64_t W, int64_t C,
                 const float *scale, const float *shift, float *o, float *xsel) {
    for (int64_t n = n0; n < n1; n++)
        for (int64_t oh = 0; oh < H / 2; oh++)
            for (int64_t ow = 0; ow < W / 2; ow++) {
                const float *p0 = x + ((n * H + 2 * oh) * W + 2 * ow) * C, *p2 = p0 + W * C;
                int64_t at = ((n * (H / 2) + oh) * (W / 2) + ow) * C;
                forward_window(p0, p0 + C, p2, p2 + C, scale, shift, o + at, xsel + at, C);
            }
}

/* The batch norm's two gradient sums, from the pooled quarter only (the gradient is zero elsewhere):
   sum_dy[c] += sum of g where o is not <= 0 (> 0 or NaN), dot[c] += sum of g * (xsel - mean) there. */
static void backward_sums(int64_t n0, int64_t n1, const float *g, const float *o, const float *xsel, int64_t ohw,
                       int64_t C, const float *mean, double *sum_dy, double *dot) {
    for (int64_t i = n0 * ohw; i < n1 * ohw; i++) {
        const float *gi = g + i * C, *oi = o + i * C, *xi = xsel + i * C;
        for (int64_t c = 0; c < C; c++) {
            float dy = oi[c] <= 0.0f ? 0.0f : gi[c];
            sum_dy[c] += dy;
            dot[c] += (double)dy * (double)(xi[c] - mean[c]);
        }
    }
}

/* One 2x2 window's dx (d0 d1 / d2 d3), all channels: its maximum found again as the forward found it. */
static void backward_window(const float *restrict g, const float *restrict o, const float *restrict p0,
                            const float *restrict p1, const float *restrict p2, const float *restrict p3,
                            const float *restrict scale, const float *restrict shift, const float *restrict mean,
                            const float *restrict kk, const float *restrict grad_mean, float *restrict d0,
                            float *restrict d1, float *restrict d2, float *restrict d3, int64_t C) {
    for (int64_t c = 0; c < C; c++) {
        float a = scale[c], b = shift[c], m = mean[c], k = kk[c], gm = grad_mean[c];
        float v0 = p0[c], v1 = p1[c], v2 = p2[c], v3 = p3[c];
        float best = v0 * a + b, xq = v0, y1 = v1 * a + b, y2 = v2 * a + b, y3 = v3 * a + b;
        float q = 0.0f;
        SCAN(y1, v1, 1.0f) SCAN(y2, v2, 2.0f) SCAN(y3, v3, 3.0f)
        float gc = g[c], dy = o[c] <= 0.0f ? 0.0f : gc;  /* the ReLU's backward: zero where its output is <= 0 */
        d0[c] = ((q == 0.0f ? dy : 0.0f) - (v0 - m) * k - gm) * a;
        d1[c] = ((q == 1.0f ? dy : 0.0f) - (v1 - m) * k - gm) * a;
        d2[c] = ((q == 2.0f ? dy : 0.0f) - (v2 - m) * k - gm) * a;
        d3[c] = ((q == 3.0f ? dy : 0.0f) - (v3 - m) * k - gm) * a;
    }
}

/* dx = (dy - (x - mean) * kk - grad_mean) * scale, PyTorch's batch-norm backward (scale = invstd *
   weight), where dy is the pooled gradient (where o is not <= 0) at each window's maximum and 0 at its
   other three positions. */
static void backward_dx(int64_t n0, int64_t n1, const float *g, const float *o, const float *x, int64_t H, int64_t W,
                     int64_t C, const float *scale, const float *shift, const float *mean, const float *kk,
                     const float *grad_mean, float *dx) {
    for (int64_t n = n0; n < n1; n++)
        for (int64_t oh = 0; oh < H / 2; oh++)
            for (int64_t ow = 0; ow < W / 2; ow++) {
                int64_t p0 = ((n * H + 2 * oh) * W + 2 * ow) * C, p2 = p0 + W * C;
                int64_t at = ((n * (H / 2) + oh) * (W / 2) + ow) * C;
                backward_window(g + at, o + at, x + p0, x + p0 + C, x + p2, x + p2 + C, scale, shift, mean, kk,
                                grad_mean, dx + p0, dx + p0 + C, dx + p2, dx + p2 + C, C);
            }
}

/* The exported kernels: the functions above over the chunks of n images. acc holds `threads` x (sum,
   sumsq) or (sum_dy, dot) rows of C doubles, chunk t's at acc + 2 * C * t. */
void bnp_stats(int64_t n, int64_t threads, const float *x, int64_t hw, int64_t C, double *acc) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
    for (int64_t t = 0; t < threads; t++)
        stats(FIRST(t), FIRST(t + 1), x, hw, C, acc + 2 * C * t, acc + 2 * C * t + C);
}

void bnp_forward(int64_t n, int64_t threads, const float *x, int64_t H, int64_t W, int64_t C,
                 const float *scale, const float *shift, float *o, float *xsel) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
    for (int64_t t = 0; t < threads; t++)
        forward(FIRST(t), FIRST(t + 1), x, H, W, C, scale, shift, o, xsel);
}

void bnp_backward_sums(int64_t n, int64_t threads, const float *g, const float *o, const float *xsel, int64_t ohw,
                       int64_t C, const float *mean, double *acc) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
    for (int64_t t = 0; t < threads; t++)
        backward_sums(FIRST(t), FIRST(t + 1), g, o, xsel, ohw, C, mean, acc + 2 * C * t, acc + 2 * C * t + C);
}

void bnp_backward_dx(int64_t n, int64_t threads, const float *g, const float *o, const float *x, int64_t H,
                     int64_t W, int64_t C, const float *scale, const float *shift, const float *mean,
                     const float *kk, const float *grad_mean, float *dx) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
    for (int64_t t = 0; t < threads; t++)
        backward_dx(FIRST(t), FIRST(t + 1), g, o, x, H, W, C, scale, shift, mean, kk, grad_mean, dx);
}
