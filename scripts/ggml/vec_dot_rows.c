// llama.cpp's decode row kernels (ggml-cpu's `vec_dot` of each weight format against its
// activation format), one thread, on weights small enough to stay in cache: the peer side of
// `XINFERENCE_BENCH_QUANT=rows cargo bench --bench quant`, which runs this binary (built by
// scripts/fixtures/build_llama_cpp.sh) when XINFERENCE_BENCH_GGML_ROWS names it.
// Prints one line per format and shape: "<format> <n>x<k> <microseconds per matrix>",
// the median of nine timings of one activation row against all n weight rows.
#include "ggml.h"
#include "ggml-cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    ggml_cpu_init();
    const struct { enum ggml_type type; const char *name; } formats[] = {
        {GGML_TYPE_Q4_0, "Q4_0"}, {GGML_TYPE_Q4_1, "Q4_1"}, {GGML_TYPE_Q5_0, "Q5_0"},
        {GGML_TYPE_Q5_1, "Q5_1"}, {GGML_TYPE_Q8_0, "Q8_0"}, {GGML_TYPE_Q4_K, "Q4K"},
        {GGML_TYPE_Q5_K, "Q5K"},  {GGML_TYPE_Q6_K, "Q6K"},
    };
    // The shapes of benches/quant.rs's `rows`: SmolLM2's feed-forward, Qwen2.5-0.5B's down.
    const int shapes[][2] = {{1536, 576}, {576, 1536}, {896, 4864}};
    srand(1);
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int n = shapes[s][0], k = shapes[s][1];
            if (k % ggml_blck_size(formats[f].type) != 0) continue;
            float *w = malloc(sizeof(float) * n * k), *x = malloc(sizeof(float) * k);
            for (long i = 0; i < (long)n * k; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
            for (int i = 0; i < k; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
            const size_t row = ggml_row_size(formats[f].type, k);
            char *wq = malloc(row * n);
            ggml_quantize_chunk(formats[f].type, w, wq, 0, n, k, NULL);
            const struct ggml_type_traits_cpu *traits = ggml_get_type_traits_cpu(formats[f].type);
            char *xq = malloc(ggml_row_size(traits->vec_dot_type, k));
            ggml_get_type_traits_cpu(traits->vec_dot_type)->from_float(x, xq, k);
            float *out = malloc(sizeof(float) * n);
            const int reps = 2000000 / n / (k / 256 + 1) + 5;
            double t[9];
            for (int r = 0; r < 9; r++) {
                const double t0 = now();
                for (int q = 0; q < reps; q++)
                    for (int i = 0; i < n; i++)
                        traits->vec_dot(k, &out[i], 0, wq + i * row, 0, xq, 0, 1);
                t[r] = (now() - t0) / reps;
            }
            qsort(t, 9, sizeof(double), by_value);
            printf("%s %dx%d %.2f\n", formats[f].name, n, k, t[4] * 1e6);
            free(w); free(x); free(wq); free(xq); free(out);
        }
    }
    return 0;
}
