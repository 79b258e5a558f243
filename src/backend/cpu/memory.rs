/*!
Emulated device memory: one `mmap` region per buffer, with `PROT_NONE` guard pages on both sides and
the data placed flush against the trailing guard page (Electric Fence style), so that reading or
writing even one element past the end is a real SIGSEGV, as on the server this project comes from.
*/

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};

/// One guarded allocation.
#[derive(Debug)]
pub struct GuardedRegion {
    map: NonNull<c_void>,
    map_len: usize,
    data: *mut u8,
    len: usize,
}

// SAFETY: the region is plain memory owned by this value; access is coordinated by the backend.
unsafe impl Send for GuardedRegion {}

/// The page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096)
}

impl GuardedRegion {
    /// Maps `len` readable and writable bytes between two guard pages; `len` may be 0.
    pub fn new(len: usize) -> nix::Result<Self> {
        let page = page_size();
        let data_pages = len.div_ceil(page);
        let map_len = (data_pages + 2) * page;
        let map_len_nz = NonZeroUsize::new(map_len).ok_or(nix::errno::Errno::EINVAL)?;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let map = unsafe {
            mmap_anonymous(
                None,
                map_len_nz,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )?
        };
        if data_pages > 0 {
            // SAFETY: the range lies inside the mapping just created.
            let inner = unsafe { NonNull::new_unchecked(map.as_ptr().cast::<u8>().add(page)) };
            let res = unsafe {
                mprotect(
                    inner.cast(),
                    data_pages * page,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                )
            };
            if let Err(e) = res {
                // SAFETY: unmapping what we mapped.
                let _ = unsafe { munmap(map, map_len) };
                return Err(e);
            }
        }
        // SAFETY: `page + data_pages * page - len` is inside the mapping.
        let data = unsafe {
            map.as_ptr()
                .cast::<u8>()
                .add(page + data_pages * page - len)
        };
        Ok(GuardedRegion {
            map,
            map_len,
            data,
            len,
        })
    }

    /// Address of the first data byte.
    pub fn addr(&self) -> u64 {
        self.data as u64
    }

    /// Data length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region holds no data bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GuardedRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns, once.
        let _ = unsafe { munmap(self.map, self.map_len) };
    }
}
