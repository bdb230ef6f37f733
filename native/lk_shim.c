/* The C side of lkrtc_trio._lkffi: resolves liblivekit_ffi at run time and
 * forwards calls to it. Compiled by native/build_ffi.py (cffi API mode). */
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*lk_event_cb)(const char *, size_t);
typedef uint64_t (*lk_request_fn)(const char *, size_t, const char **, size_t *);
typedef bool (*lk_drop_fn)(uint64_t);
typedef void (*lk_init_fn)(lk_event_cb, bool, const char *, const char *);
typedef void (*lk_dispose_fn)(void);

static lk_request_fn p_request;
static lk_drop_fn p_drop;
static lk_init_fn p_init;
static lk_dispose_fn p_dispose;

static void lk_on_event(const char *data, size_t len);

static const char *lk_open(const char *path) {
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        return dlerror();
    }
    p_request = (lk_request_fn)dlsym(dl, "livekit_ffi_request");
    p_drop = (lk_drop_fn)dlsym(dl, "livekit_ffi_drop_handle");
    p_init = (lk_init_fn)dlsym(dl, "livekit_ffi_initialize");
    p_dispose = (lk_dispose_fn)dlsym(dl, "livekit_ffi_dispose");
    if (!p_request || !p_drop || !p_init || !p_dispose) {
        return "a livekit_ffi_* symbol is missing from the library";
    }
    return NULL;
}

static uint64_t lk_request(const char *data, size_t len, const char **res_ptr, size_t *res_len) {
    return p_request(data, len, res_ptr, res_len);
}

static bool lk_drop_handle(uint64_t handle) { return p_drop(handle); }

static void lk_initialize(bool capture_logs, const char *sdk, const char *sdk_version) {
    p_init(lk_on_event, capture_logs, sdk, sdk_version);
}

static void lk_dispose(void) { p_dispose(); }
