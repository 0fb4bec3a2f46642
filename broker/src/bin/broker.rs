//! The `broker` program; everything it does lives in [`hubbub::tools::broker`].

use clap::Parser;

/// jemalloc rather than glibc's malloc, for memory per idle client. tokio allocates each task
/// and each socket's readiness state 128-byte aligned; glibc serves aligned requests by carving
/// them out of larger blocks and leaves the offcuts scattered, while jemalloc's size classes of
/// 256 and 384 bytes are aligned as they are. Measured with `loadgen memory` (10,000 idle
/// subscribers): about 890 bytes per connection instead of 1,130, and fan-out no slower.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once before the first allocation (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them).
///
/// - `narenas:1`: one arena for every thread. A client's task is allocated on the thread that
///   accepted it and freed on whichever ran it last; with an arena per thread (jemalloc's
///   default is four per core) what one wave of clients freed sat in one arena while the next
///   wave allocated fresh pages in another. Measured, 10,000 idle subscribers connected three
///   times over on one broker: 806, 1,037 and 1,018 bytes per connection by default; 796, 812
///   and 806 with this. The threads' caches still serve most allocations without the lock.
/// - `background_thread:true,dirty_decay_ms:1000`: pages freed by a burst or a mass disconnect
///   go back to the system within about a second, from a thread of jemalloc's own. By default
///   jemalloc returns them only while it is allocating, so an idle broker kept the high-water
///   mark of its last burst.
#[export_name = "_rjem_malloc_conf"]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8] = b"narenas:1,background_thread:true,dirty_decay_ms:1000\0";

fn main() -> anyhow::Result<()> {
    let opts = hubbub::tools::broker::Opts::parse();
    hubbub::tools::broker::runtime(opts.threads)?.block_on(hubbub::tools::broker::run(opts))
}
