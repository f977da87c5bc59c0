/* char_lm.c — a small decoder-only character-level language model trained with Ponte's C API
 * on the default device: byte tokens, a token embedding plus sinusoidal positions, pre-norm
 * transformer layers with causal self-attention (pn_nn_transformer_encoder under a causal
 * mask, like MLX's transformer_lm example), a linear head; AdamW with a linear warmup then
 * cosine decay of the learning rate, and gradient clipping. Prints the loss and tokens/s every
 * log interval, then "final loss: X" and a sample generated with temperature sampling.
 *
 * usage: char_lm [--data FILE_OR_DIR] [--steps N] [--seed S] [--device cpu|gpu] [--batch B]
 *                [--context T] [--dims D] [--heads H] [--layers L] [--lr LR] [--log-every N]
 *                [--sample N] [--temperature X]
 * The text defaults to /usr/share/games/fortunes (Debian's fortunes-min); a directory means
 * every regular file in it except fortune's .dat indexes, in name order. The defaults train a
 * 2-layer, 64-wide model for 300 steps of 16 x 64 characters in well under a minute on 2 CPU
 * cores. */
#include <ponte.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_DATA "/usr/share/games/fortunes"

typedef struct {
    const char *data;
    int steps, batch, context, dims, heads, layers, log_every, sample;
    double lr, temperature;
    uint64_t seed;
    const char *device;
} options;

#define CHECK_PN(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "error: %s (%s:%d)\n", pn_last_error_message(), __FILE__, __LINE__); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ───────────────────────────── data ───────────────────────────── */

typedef struct {
    unsigned char *bytes;
    size_t n, cap;
} text;

/* Appends the file at path to t. 0, or -1 with errno set. */
static int append_file(text *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (t->n + k > t->cap) {
            size_t cap = t->cap ? t->cap : 1 << 16;
            while (cap < t->n + k) cap *= 2;
            unsigned char *b = realloc(t->bytes, cap);
            if (!b) {
                fclose(f);
                errno = ENOMEM;
                return -1;
            }
            t->bytes = b, t->cap = cap;
        }
        memcpy(t->bytes + t->n, buf, k);
        t->n += k;
    }
    int bad = ferror(f);
    fclose(f);
    return bad ? -1 : 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The training text: the file at path, or the regular files of the directory (symlinks and
 * *.dat skipped) in name order. Exits with a message saying what to do when it is missing. */
static text load_text(const char *path)
{
    text t = {0};
    struct stat st;
    int rc = stat(path, &st);
    if (rc == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        char **names = NULL;
        int n = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (e->d_name[0] == '.' || (len > 4 && strcmp(e->d_name + len - 4, ".dat") == 0)) continue;
            char full[4096];
            struct stat fs;
            snprintf(full, sizeof full, "%s/%s", path, e->d_name);
            if (lstat(full, &fs) != 0 || !S_ISREG(fs.st_mode)) continue;
            names = realloc(names, sizeof *names * (size_t)(n + 1));
            names[n++] = strdup(full);
        }
        if (d) closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int i = 0; i < n; i++) {
            if (rc == 0 && append_file(&t, names[i]) != 0) {
                fprintf(stderr, "error: cannot read %s: %s\n", names[i], strerror(errno));
                exit(1);
            }
            free(names[i]);
        }
        free(names);
    } else if (rc == 0) {
        rc = append_file(&t, path);
    }
    if (rc != 0 || t.n == 0) {
        fprintf(stderr,
                "error: no training text at %s%s%s\n"
                "  char_lm trains on a text file or a directory of them (--data FILE_OR_DIR); its default\n"
                "  is Debian's fortunes-min: sudo apt-get install fortunes-min\n",
                path, rc != 0 ? ": " : " (empty)", rc != 0 ? strerror(errno) : "");
        exit(1);
    }
    return t;
}

/* ───────────────────────────── the model ───────────────────────────── */

/* The model's shape and its parameter names, as an mlx.nn model with attributes embedding,
 * transformer (nn.TransformerEncoder) and out_proj would name them. */
typedef struct {
    pn_transformer_config cfg;
    int vocab, context;
    int nparams;
    char **names; /* the parameter names in a fixed order */
} model;

/* (B, T) int32 tokens -> (B, T, vocab) logits. */
static pn_array *forward(const model *m, const pn_params *p, pn_array *tokens)
{
    int64_t T = pn_dim(tokens, 1);
    pn_array *h = pn_nn_embedding(tokens, pn_params_get(p, "embedding.weight"));
    pn_array *pos = pn_nn_sinusoidal_positional_encoding(pn_arange(0, (double)T, 1, PN_FLOAT32), m->cfg.dims,
                                                         1e-4, 1.0, 0.0, false, false);
    h = pn_add(h, pos);
    h = pn_nn_transformer_encoder(h, (pn_attention_mask){"causal", NULL}, p, "transformer", &m->cfg, NULL);
    return pn_nn_linear(h, pn_params_get(p, "out_proj.weight"), pn_params_get(p, "out_proj.bias"));
}

/* Parameters with mlx.nn's initialization (Embedding: normal with std 1/sqrt(dims); Linear:
 * uniform(+-1/sqrt(in)); the transformer's through pn_nn_transformer_init). */
static pn_params *init_model(model *m, uint64_t seed)
{
    pn_scope_push();
    pn_params *p = pn_params_new();
    pn_array *keys = pn_random_split(pn_random_key(seed), 4);
    pn_array *k[4];
    for (int i = 0; i < 4; i++) k[i] = pn_take(keys, pn_scalar_int(i, PN_INT32), 0);
    int64_t D = m->cfg.dims, V = m->vocab;
    double s = 1.0 / sqrt((double)D);
    CHECK_PN(pn_params_set(p, "embedding.weight", pn_nn_init_normal((int64_t[]){V, D}, 2, PN_FLOAT32, 0, s, k[0])) == 0);
    CHECK_PN(pn_nn_transformer_init(p, "transformer", PN_TRANSFORMER_ENCODER, &m->cfg, k[1]) == 0);
    CHECK_PN(pn_params_set(p, "out_proj.weight", pn_nn_init_uniform((int64_t[]){V, D}, 2, PN_FLOAT32, -s, s, k[2])) == 0);
    CHECK_PN(pn_params_set(p, "out_proj.bias", pn_nn_init_uniform((int64_t[]){V}, 1, PN_FLOAT32, -s, s, k[3])) == 0);
    CHECK_PN(pn_params_eval(p) == 0);
    pn_scope_pop();
    m->nparams = pn_params_count(p);
    m->names = malloc(sizeof(char *) * (size_t)m->nparams);
    for (int i = 0; i < m->nparams; i++) m->names[i] = strdup(pn_params_name(p, i));
    return p;
}

/* The loss closure: inputs are the parameters in m->names' order; the batch is in the
 * context. Output: the mean cross entropy of next-character prediction. */
typedef struct {
    const model *m;
    pn_array *x, *y; /* (B, T) int32 inputs and targets of the current step */
} loss_ctx;

static int loss_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    loss_ctx *c = ctx;
    pn_params *p = pn_params_new();
    for (int i = 0; i < nin; i++) pn_params_set(p, c->m->names[i], in[i]);
    pn_array *logits = forward(c->m, p, c->x);
    pn_params_free(p);
    out[0] = pn_nn_cross_entropy(logits, c->y, -1, 0.0, PN_REDUCTION_MEAN);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* ───────────────────────────── sampling ───────────────────────────── */

/* Generates n characters after prompt (token ids, len >= 1) by temperature sampling from the
 * model, printing them as they come. */
static void generate(const model *m, const pn_params *p, const unsigned char *itos, int32_t *ctx, int len, int n,
                     double temperature, uint64_t seed)
{
    int cap = len + n;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)cap);
    memcpy(seq, ctx, sizeof(int32_t) * (size_t)len);
    pn_array *key = pn_scope_take(pn_random_key(seed + 1)); /* released at the end */
    for (int i = 0; i < n; i++) {
        pn_scope_push();
        int w = len < m->context ? len : m->context;
        pn_array *x = pn_array_from_data(seq + len - w, (int64_t[]){1, w}, 2, PN_INT32);
        pn_array *logits = forward(m, p, x); /* (1, w, V) */
        int64_t start[3] = {0, w - 1, 0}, stop[3] = {1, w, m->vocab};
        pn_array *last = pn_reshape(pn_slice(logits, start, stop, NULL, 3), (int64_t[]){m->vocab}, 1);
        pn_array *ks = pn_random_split(key, 2);
        pn_array *next_key = pn_take(ks, pn_scalar_int(0, PN_INT32), 0);
        pn_array *sub = pn_take(ks, pn_scalar_int(1, PN_INT32), 0);
        pn_array *tok = pn_random_categorical(pn_multiply(last, pn_weak_float(1.0 / temperature)), -1, NULL, 0, 0, sub);
        CHECK_PN(tok);
        seq[len++] = (int32_t)pn_item_int(tok);
        CHECK_PN(pn_eval(&next_key, 1) == 0);
        pn_release(key);
        key = pn_retain(next_key);
        pn_scope_pop();
        putchar(itos[seq[len - 1]]);
    }
    putchar('\n');
    pn_release(key);
    free(seq);
}

/* ───────────────────────────── main ───────────────────────────── */

static options parse(int argc, char **argv)
{
    options o = {DEFAULT_DATA, 300, 16, 64, 64, 4, 2, 25, 300, 3e-3, 0.8, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "usage: see the comment at the top of examples/char_lm.c\n");
            exit(2);
        }
        if (!strcmp(a, "--data")) o.data = v;
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--context")) o.context = atoi(v);
        else if (!strcmp(a, "--dims")) o.dims = atoi(v);
        else if (!strcmp(a, "--heads")) o.heads = atoi(v);
        else if (!strcmp(a, "--layers")) o.layers = atoi(v);
        else if (!strcmp(a, "--lr")) o.lr = atof(v);
        else if (!strcmp(a, "--log-every")) o.log_every = atoi(v);
        else if (!strcmp(a, "--sample")) o.sample = atoi(v);
        else if (!strcmp(a, "--temperature")) o.temperature = atof(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            exit(2);
        }
        i++;
    }
    if (o.steps < 1 || o.batch < 1 || o.context < 2 || o.dims < 4 || o.heads < 1 || o.layers < 0 ||
        o.log_every < 1 || o.sample < 0 || !(o.lr > 0) || !(o.temperature > 0)) {
        fprintf(stderr, "error: bad options (steps, batch, log-every >= 1; context >= 2; dims >= 4; lr, "
                        "temperature > 0)\n");
        exit(2);
    }
    if (o.device) {
        pn_device d = {strcmp(o.device, "gpu") == 0 ? PN_GPU : PN_CPU, 0};
        if ((strcmp(o.device, "gpu") && strcmp(o.device, "cpu")) || pn_set_default_device(d) != 0) {
            fprintf(stderr, "error: device %s is not available%s%s\n", o.device,
                    d.type == PN_GPU ? ": " : " (use cpu or gpu)",
                    d.type == PN_GPU ? pn_gpu_unavailable_reason() : "");
            exit(2);
        }
    }
    return o;
}

int main(int argc, char **argv)
{
    options opt = parse(argc, argv);
    text t = load_text(opt.data);
    if (t.n < (size_t)opt.context + 2) {
        fprintf(stderr, "error: %s holds %zu bytes, fewer than --context + 2 (%d)\n", opt.data, t.n, opt.context + 2);
        return 1;
    }
    /* the vocabulary: the bytes that occur, in byte order */
    int stoi[256], vocab = 0;
    unsigned char itos[256];
    bool seen[256] = {false};
    for (size_t i = 0; i < t.n; i++) seen[t.bytes[i]] = true;
    for (int b = 0; b < 256; b++) {
        stoi[b] = seen[b] ? vocab : -1;
        if (seen[b]) itos[vocab++] = (unsigned char)b;
    }
    int32_t *ids = malloc(sizeof(int32_t) * t.n);
    for (size_t i = 0; i < t.n; i++) ids[i] = stoi[t.bytes[i]];

    model m = {.cfg = {.dims = opt.dims, .num_heads = opt.heads, .num_encoder_layers = opt.layers, .norm_first = true},
               .vocab = vocab, .context = opt.context};
    pn_params *params = init_model(&m, opt.seed);
    int64_t nweights = 0;
    for (int i = 0; i < m.nparams; i++) nweights += pn_size(pn_params_at(params, i));
    pn_device dev = pn_default_device();
    printf("char_lm on %s: %zu characters (%d distinct) from %s; %d layers, %d dims, %d heads, context %d, "
           "%lld weights; %d steps of batch %d, AdamW lr %g (warmup, cosine decay), clip 1.0\n",
           dev.type == PN_GPU ? "gpu" : "cpu", t.n, vocab, opt.data, opt.layers, opt.dims, opt.heads, opt.context,
           (long long)nweights, opt.steps, opt.batch, opt.lr);
    fflush(stdout);

    pn_optimizer *optim = pn_optim_adamw(opt.lr, 0.9, 0.999, 1e-8, 0.01, false);
    int64_t warmup = opt.steps / 10 > 0 ? opt.steps / 10 : 1;
    int64_t decay = opt.steps - warmup > 0 ? opt.steps - warmup : 1;
    pn_optimizer_set_schedule(optim, pn_schedule_join(pn_schedule_linear(0, opt.lr, warmup),
                                                      pn_schedule_cosine_decay(opt.lr, decay, opt.lr * 0.1), warmup));
    loss_ctx lc = {&m, NULL, NULL};
    pn_closure *lf = pn_closure_new(loss_fn, &lc, NULL);
    CHECK_PN(lf);

    int64_t B = opt.batch, T = opt.context;
    int32_t *xb = malloc(sizeof(int32_t) * (size_t)(B * T)), *yb = malloc(sizeof(int32_t) * (size_t)(B * T));
    pn_array **prim = malloc(sizeof(pn_array *) * (size_t)m.nparams);
    pn_array **grads = malloc(sizeof(pn_array *) * (size_t)m.nparams);
    uint64_t rng = opt.seed * 6364136223846793005ull + 1442695040888963407ull;
    double t0 = now(), interval_loss = 0, final_loss = NAN;
    int interval_steps = 0;
    for (int step = 0; step < opt.steps; step++) {
        for (int64_t b = 0; b < B; b++) { /* random windows of T + 1 characters */
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t start = (size_t)((rng >> 33) % (uint64_t)(t.n - (size_t)T - 1));
            for (int64_t i = 0; i < T; i++) {
                xb[b * T + i] = ids[start + (size_t)i];
                yb[b * T + i] = ids[start + (size_t)i + 1];
            }
        }
        pn_scope_push();
        lc.x = pn_array_from_data(xb, (int64_t[]){B, T}, 2, PN_INT32);
        lc.y = pn_array_from_data(yb, (int64_t[]){B, T}, 2, PN_INT32);
        for (int i = 0; i < m.nparams; i++) prim[i] = pn_params_get(params, m.names[i]);
        pn_array *one = pn_scalar(1.0, PN_FLOAT32), *loss = NULL;
        int nout = 0;
        CHECK_PN(pn_vjp(lf, m.nparams, prim, 1, &one, &nout, &loss, grads) == 0);
        pn_params *g = pn_params_new();
        for (int i = 0; i < m.nparams; i++) CHECK_PN(pn_params_set(g, m.names[i], grads[i]) == 0);
        CHECK_PN(pn_clip_grad_norm(g, 1.0));
        CHECK_PN(pn_optimizer_update(optim, params, g) == 0);
        pn_params_free(g);
        CHECK_PN(pn_eval(&loss, 1) == 0 && pn_params_eval(params) == 0 && pn_params_eval(pn_optimizer_state(optim)) == 0);
        interval_loss += pn_item(loss);
        interval_steps++;
        pn_scope_pop();
        if ((step + 1) % opt.log_every == 0 || step + 1 == opt.steps) {
            double t1 = now();
            final_loss = interval_loss / interval_steps;
            printf("step %d/%d: loss %.4f, %.0f tokens/s, lr %.2e\n", step + 1, opt.steps, final_loss,
                   (double)(B * T * interval_steps) / (t1 - t0), pn_optimizer_learning_rate(optim));
            fflush(stdout);
            t0 = t1, interval_loss = 0, interval_steps = 0;
        }
    }
    printf("final loss: %.4f\n", final_loss);
    if (opt.sample > 0) {
        /* the prompt: the first line of the text (at most a context) */
        int len = 0;
        int32_t prompt[64];
        while (len < 64 && len < opt.context && (size_t)len < t.n && (len == 0 || t.bytes[len - 1] != '\n')) {
            prompt[len] = ids[len];
            len++;
        }
        printf("sample (temperature %g):\n", opt.temperature);
        fwrite(t.bytes, 1, (size_t)len, stdout);
        generate(&m, params, itos, prompt, len, opt.sample, opt.temperature, opt.seed);
    }
    pn_closure_release(lf);
    pn_optimizer_free(optim);
    pn_params_free(params);
    for (int i = 0; i < m.nparams; i++) free(m.names[i]);
    free(m.names);
    free(prim), free(grads), free(xb), free(yb), free(ids), free(t.bytes);
    return 0;
}
