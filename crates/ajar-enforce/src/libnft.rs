//! libnftables, loaded at run time and called in-process (I/O).
//!
//! The same JSON batch that `nft -j -f -` would read, run by the library the `nft` binary is built on,
//! without a process per change: a one-element change takes 0.2–0.7 ms instead of 2.5–3.4 ms (see
//! BENCHMARKS.md). The library is opened with `dlopen`, not linked, so an agent built here still runs
//! (through the `nft` binary) on a host that has nft but not `libnftables.so.1`, and the build needs no
//! development headers. The bindings are eight functions of libnftables' stable ABI
//! (`libnftables(3)`); the published `-sys` crates link at build time, which is what we avoid.
//!
//! A context's netlink socket belongs to the network namespace of the thread that created it, which for
//! the agent is the host's (or, under `ip netns exec`, the namespace's).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

use crate::error::EnforceError;

/// `NFT_CTX_OUTPUT_JSON` in `enum nft_output_flags`.
const OUTPUT_JSON: c_uint = 1 << 4;
/// A run that read or printed more than this gives the freed heap back: libnftables holds about 2.5 KiB
/// per set element while it runs (250 MiB for 100,000 grants), which the allocator would otherwise keep.
const TRIM_AFTER: usize = 1 << 20;
/// The name [`EnforceError`]s give as the program.
pub(crate) const NAME: &str = "libnftables";

// The signatures libnftables.h declares.
type CtxNew = unsafe extern "C" fn(flags: c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(ctx: *mut c_void);
type SetFlags = unsafe extern "C" fn(ctx: *mut c_void, flags: c_uint);
type Buffer = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;
type RunCmd = unsafe extern "C" fn(ctx: *mut c_void, buf: *const c_char) -> c_int;
type GetBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> *const c_char;

/// The entry points used, resolved once per process. The library is never closed: the pointers must stay
/// valid for as long as any context may exist.
struct Api {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    output_set_flags: SetFlags,
    buffer_output: Buffer,
    buffer_error: Buffer,
    run_cmd_from_buffer: RunCmd,
    get_output_buffer: GetBuffer,
    get_error_buffer: GetBuffer,
}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc, read before any other dl call.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-null, NUL-terminated (above).
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}

fn load() -> Result<Api, String> {
    // SAFETY: a constant NUL-terminated name; dlopen runs the library's initialisers, which libnftables
    // does not use for anything but its own state.
    let handle = unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load libnftables.so.1: {}", dlerror()));
    }
    let symbol = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live handle (never closed); `name` is NUL-terminated.
        let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if address.is_null() {
            return Err(format!("libnftables.so.1 has no {}: {}", name.to_string_lossy(), dlerror()));
        }
        Ok(address)
    };
    // SAFETY: each symbol is transmuted to the signature libnftables.h declares for it (libnftables(3)).
    unsafe {
        Ok(Api {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol(c"nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol(c"nft_ctx_free")?),
            output_set_flags: std::mem::transmute::<*mut c_void, SetFlags>(symbol(c"nft_ctx_output_set_flags")?),
            buffer_output: std::mem::transmute::<*mut c_void, Buffer>(symbol(c"nft_ctx_buffer_output")?),
            buffer_error: std::mem::transmute::<*mut c_void, Buffer>(symbol(c"nft_ctx_buffer_error")?),
            run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(symbol(c"nft_run_cmd_from_buffer")?),
            get_output_buffer: std::mem::transmute::<*mut c_void, GetBuffer>(symbol(c"nft_ctx_get_output_buffer")?),
            get_error_buffer: std::mem::transmute::<*mut c_void, GetBuffer>(symbol(c"nft_ctx_get_error_buffer")?),
        })
    }
}

/// libnftables, usable here. Each run gets a context of its own, as each `nft` process does: nothing read
/// of the ruleset outlives the run, so no cache can go stale when something else changes the kernel's
/// tables, and a new context costs little next to a transaction.
#[derive(Clone, Copy)]
pub(crate) struct Libnft {
    api: &'static Api,
}

/// One context, JSON output, output and errors captured in buffers; freed on drop.
struct Ctx {
    api: &'static Api,
    ptr: NonNull<c_void>,
}

impl Ctx {
    fn new(api: &'static Api) -> Result<Ctx, String> {
        // SAFETY: flags 0 is NFT_CTX_DEFAULT.
        let ptr = NonNull::new(unsafe { (api.ctx_new)(0) }).ok_or("nft_ctx_new failed")?;
        let ctx = Ctx { api, ptr };
        // SAFETY: a live context; these only set flags and switch output to internal buffers.
        let buffered = unsafe {
            (api.output_set_flags)(ptr.as_ptr(), OUTPUT_JSON);
            (api.buffer_output)(ptr.as_ptr()) == 0 && (api.buffer_error)(ptr.as_ptr()) == 0
        };
        if !buffered {
            return Err("libnftables could not buffer its output".into());
        }
        Ok(ctx)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from nft_ctx_new and is freed once, here.
        unsafe { (self.api.ctx_free)(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Libnft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NAME)
    }
}

impl Libnft {
    /// The library, or why it cannot be used here.
    pub(crate) fn new() -> Result<Libnft, String> {
        let api = api()?;
        Ctx::new(api)?;
        Ok(Libnft { api })
    }

    /// Runs `commands` (a JSON batch, or nft's own syntax) and returns what it printed; a failure is an error
    /// carrying libnftables' own message, as nft would print it.
    pub(crate) fn run(&self, action: &str, commands: &str) -> Result<String, EnforceError> {
        let input = CString::new(commands)
            .map_err(|_| EnforceError::Output { action: action.into(), detail: "the commands contain a NUL byte".into() })?;
        let ctx = Ctx::new(self.api).map_err(|detail| EnforceError::Output { action: action.into(), detail })?;
        let ptr = ctx.ptr.as_ptr();
        // SAFETY: a live context, used by this call alone; `input` is NUL-terminated and outlives the call. The
        // buffers returned are owned by the context and valid until its next call or its end; they are
        // copied before either.
        let (rc, output, error) = unsafe {
            let rc = (ctx.api.run_cmd_from_buffer)(ptr, input.as_ptr());
            (rc, owned((ctx.api.get_output_buffer)(ptr)), owned((ctx.api.get_error_buffer)(ptr)))
        };
        drop(ctx);
        if commands.len().max(output.len()) > TRIM_AFTER {
            // SAFETY: malloc_trim only gives free heap pages back to the kernel.
            unsafe { libc::malloc_trim(0) };
        }
        if rc != 0 {
            return Err(EnforceError::Failed {
                action: action.into(),
                program: NAME.into(),
                status: format!("returned {rc}"),
                stderr: error.trim().to_string(),
            });
        }
        Ok(output)
    }
}

/// Copies a C string that may be null.
///
/// # Safety
/// `ptr` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn owned(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}
