// llama-batched-bench's decode loop in C, on the libllama our engine loads: the fidelity
// script's "C loop" column, so that ours / C is the whole cost of driving llama.cpp from
// Python. Prints S_TG (tokens/s) of each repetition after one unrecorded one.
//   llama_decode_loop MODEL NPL REPS N_CTX N_BATCH N_UBATCH THREADS GPU_LAYERS [PP TG]
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level; (void)text; (void)user;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s MODEL NPL REPS N_CTX N_BATCH N_UBATCH THREADS GPU_LAYERS [PP TG]\n", argv[0]);
        return 2;
    }
    int npl = atoi(argv[2]), reps = atoi(argv[3]);
    int pp = argc > 9 ? atoi(argv[9]) : 32, tg = argc > 10 ? atoi(argv[10]) : 64;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = atoi(argv[8]);
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = atoi(argv[4]);
    cp.n_batch = atoi(argv[5]);
    cp.n_ubatch = atoi(argv[6]);
    cp.n_seq_max = npl;
    cp.n_threads = cp.n_threads_batch = atoi(argv[7]);
    cp.kv_unified = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create the context\n"); return 1; }
    llama_memory_t mem = llama_get_memory(ctx);
    struct llama_batch b = llama_batch_init(pp > npl ? pp : npl, 0, 1);
    for (int r = 0; r <= reps; r++) {
        llama_memory_clear(mem, 1);
        for (int j = 0; j < npl; j++) {  // each prompt in its own batch: untimed
            for (int i = 0; i < pp; i++) {
                b.token[i] = 4 + rand() % 1000; b.pos[i] = i; b.n_seq_id[i] = 1;
                b.seq_id[i][0] = j; b.logits[i] = i == pp - 1;
            }
            b.n_tokens = pp;
            if (llama_decode(ctx, b)) { fprintf(stderr, "prompt decode failed\n"); return 1; }
        }
        llama_synchronize(ctx);
        double t = now();
        for (int i = 0; i < tg; i++) {  // as the Python loop does: every sequence, then wait
            for (int j = 0; j < npl; j++) {
                b.token[j] = 4 + rand() % 1000; b.pos[j] = pp + i; b.seq_id[j][0] = j; b.logits[j] = 1;
            }
            b.n_tokens = npl;
            if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
            llama_synchronize(ctx);
        }
        if (r) printf("%.1f\n", npl * tg / (now() - t));
    }
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
