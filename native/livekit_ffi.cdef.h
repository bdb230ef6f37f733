/* C declarations seen by cffi (the `cdef`) for lkrtc_trio._lkffi.
 *
 * liblivekit_ffi exports four C functions (see docs/architecture.md):
 *   uint64_t livekit_ffi_request(const uint8_t *data, size_t len,
 *                                const uint8_t **res_ptr, size_t *res_len);
 *   bool     livekit_ffi_drop_handle(uint64_t handle);
 *   void     livekit_ffi_initialize(void (*cb)(const uint8_t *, size_t),
 *                                   bool capture_logs, const char *sdk,
 *                                   const char *sdk_version);
 *   void     livekit_ffi_dispose(void);
 *
 * The library is not linked at build time: lk_open() dlopen()s the file chosen
 * at run time (LIVEKIT_LIB_PATH or the livekit wheel) and the lk_* wrappers
 * call through the resolved pointers. Bytes are declared as `char` so that
 * ffi.unpack() returns `bytes` in a single call.
 */

/* Open the library and resolve the four symbols. NULL on success, else an
 * error message (static storage, valid until the next call). */
const char *lk_open(const char *path);

uint64_t lk_request(const char *data, size_t len, const char **res_ptr, size_t *res_len);
bool lk_drop_handle(uint64_t handle);
/* Initializes the native core with lk_on_event as its event callback. */
void lk_initialize(bool capture_logs, const char *sdk, const char *sdk_version);
void lk_dispose(void);
/* At interpreter exit: drop every later event in C, never entering Python. */
void lk_close_events(void);
/* Whether debug/trace-only log batches reach lk_on_event (default false:
 * the C side drops them on the native thread, without the GIL), and how many
 * it dropped so far. */
void lk_set_quiet_logs(bool wanted);
uint64_t lk_quiet_logs_dropped_count(void);
/* The C side's test for such a batch (exposed for the parity test with
 * lkrtc_trio._bridge.is_quiet_log). */
bool lk_is_quiet_log(const char *data, size_t len);

/* Implemented in Python (lkrtc_trio._native); runs on native threads. */
extern "Python" void lk_on_event(const char *data, size_t len);
