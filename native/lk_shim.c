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

/* Debug/trace-only log batches (libwebrtc logs one per SCTP packet: dozens
 * per data message) are dropped here, on the native thread, without taking
 * the GIL, unless lk_set_quiet_logs(true) asked for them (someone logs
 * lkrtc_trio.native at DEBUG). Mirrors lkrtc_trio._bridge.is_quiet_log. */
static volatile int lk_quiet_logs_wanted = 0;
static volatile uint64_t lk_quiet_logs_dropped = 0;

static const unsigned char *lk_varint(const unsigned char *p, const unsigned char *end,
                                      uint64_t *value) {
    uint64_t v = 0;
    int shift = 0;
    while (p < end && shift < 64) {
        unsigned char b = *p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *value = v;
            return p;
        }
        shift += 7;
    }
    return NULL;
}

static bool lk_is_quiet_log(const char *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    const unsigned char *end = p + len;
    uint64_t size;
    if (len < 2 || p[0] != 0x92 || p[1] != 0x01) { /* FfiEvent.logs, field 18 */
        return false;
    }
    p = lk_varint(p + 2, end, &size);
    if (p == NULL || size != (uint64_t)(end - p)) {
        return false;
    }
    while (p < end) {
        if (*p != 0x0A) { /* LogBatch.records */
            return false;
        }
        p = lk_varint(p + 1, end, &size);
        if (p == NULL || p + 1 >= end) {
            return false;
        }
        if (p[0] != 0x08 || p[1] < 3) { /* LogRecord.level first: DEBUG = 3, TRACE = 4 */
            return false;
        }
        if (size > (uint64_t)(end - p)) {
            return false;
        }
        p += size;
    }
    return true;
}

/* Set at interpreter exit (lk_close_events), before the interpreter finalizes:
 * from then on events are dropped here, without entering Python. A native
 * thread that asks for the GIL of a finalizing interpreter is ended with
 * pthread_exit() (CPython before 3.14), and that forced unwind through the
 * native core's Rust frames aborts the whole process. */
static volatile int lk_events_closed = 0;

static void lk_close_events(void) { __atomic_store_n(&lk_events_closed, 1, __ATOMIC_SEQ_CST); }

static void lk_on_native_event(const char *data, size_t len) {
    if (__atomic_load_n(&lk_events_closed, __ATOMIC_SEQ_CST)) {
        return;
    }
    if (!lk_quiet_logs_wanted && lk_is_quiet_log(data, len)) {
        __atomic_add_fetch(&lk_quiet_logs_dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    lk_on_event(data, len);
}

static void lk_set_quiet_logs(bool wanted) { lk_quiet_logs_wanted = wanted ? 1 : 0; }

static uint64_t lk_quiet_logs_dropped_count(void) {
    return __atomic_load_n(&lk_quiet_logs_dropped, __ATOMIC_RELAXED);
}

static void lk_initialize(bool capture_logs, const char *sdk, const char *sdk_version) {
    p_init(lk_on_native_event, capture_logs, sdk, sdk_version);
}

static void lk_dispose(void) { p_dispose(); }
