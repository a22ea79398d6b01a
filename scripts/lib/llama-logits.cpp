// llama-logits: the logits llama.cpp computes for given token ids, with an optional LoRA adapter.
// Usage: llama-logits MODEL.gguf IDS.txt OUT.f32 [--lora ADAPTER.gguf [SCALE]]
//        llama-logits MODEL.gguf --tokenize TEXT.txt OUT.txt   (the ids llama-perplexity feeds: special
//        tokens added as the vocabulary says, none parsed from the text)
// IDS.txt: whitespace-separated token ids, fed as they are (no BOS added). OUT.f32: n_tokens ×
// n_vocab little-endian fp32, row by row. Built by scripts/lib/llama-cpp.sh against libllama.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS.txt OUT.f32 [--lora ADAPTER.gguf [SCALE]]\n", argv[0]);
        return 2;
    }
    const char * lora_path = nullptr;
    float lora_scale = 1.0f;
    if (argc >= 6 && strcmp(argv[4], "--lora") == 0) {
        lora_path = argv[5];
        if (argc >= 7) lora_scale = strtof(argv[6], nullptr);
    }
    if (strcmp(argv[2], "--tokenize") == 0) {
        llama_backend_init();
        llama_model_params mp = llama_model_default_params();
        mp.vocab_only = true;
        llama_model * model = llama_model_load_from_file(argv[1], mp);
        if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
        std::ifstream in(argv[3], std::ios::binary);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const llama_vocab * vocab = llama_model_get_vocab(model);
        std::vector<llama_token> ids(text.size() + 16);
        int n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), true, false);
        if (n < 0) { fprintf(stderr, "tokenization failed\n"); return 1; }
        FILE * out = fopen(argv[4], "w");
        for (int i = 0; i < n; i++) fprintf(out, "%d\n", ids[i]);
        fclose(out);
        printf("%d tokens -> %s\n", n, argv[4]);
        llama_model_free(model);
        return 0;
    }
    std::vector<llama_token> ids;
    {
        std::ifstream in(argv[2]);
        long v;
        while (in >> v) ids.push_back((llama_token) v);
    }
    if (ids.empty()) { fprintf(stderr, "no token ids in %s\n", argv[2]); return 1; }

    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) ids.size();
    cp.n_batch = (uint32_t) ids.size();
    cp.n_ubatch = (uint32_t) ids.size();
    cp.n_threads = cp.n_threads_batch = 2;
    // In fp32 throughout: llama.cpp's default F16 KV cache and its CPU flash attention (which takes
    // Q and K in F16) would round every key, value and query.
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot make a context\n"); return 1; }
    if (lora_path) {
        llama_adapter_lora * adapter = llama_adapter_lora_init(model, lora_path);
        if (!adapter) { fprintf(stderr, "cannot load the adapter %s\n", lora_path); return 1; }
        if (llama_set_adapters_lora(ctx, &adapter, 1, &lora_scale) != 0) { fprintf(stderr, "cannot apply the adapter\n"); return 1; }
    }
    const int n = (int) ids.size();
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "llama_decode failed\n"); return 1; }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE * out = fopen(argv[3], "wb");
    if (!out) { fprintf(stderr, "cannot write %s\n", argv[3]); return 1; }
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out);
    fclose(out);
    printf("%d tokens, %d logits each -> %s\n", n, n_vocab, argv[3]);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
