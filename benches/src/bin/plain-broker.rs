//! The `plain-broker` program: the plain tokio baseline (`hubbub_benches::plain`) on a socket.

use anyhow::Context;
use clap::Parser;

/// The plain tokio pub/sub broker hubbub is measured against: a task pair per connection,
/// each message encoded once, writes batched. Speaks hubbub's protocol (PROTOCOL.md).
#[derive(Debug, Parser)]
#[command(name = "plain-broker")]
struct Opts {
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:4250")]
    listen: std::net::SocketAddr,
    /// Runtime worker threads [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Once listening, write the address (HOST:PORT) into this file.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    hubbub::tools::broker::runtime(opts.threads)?.block_on(async {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        if let Some(path) = &opts.ready_file {
            hubbub::launch::write_ready_file(path, addr)
                .with_context(|| format!("cannot write the ready file {}", path.display()))?;
        }
        eprintln!("plain-broker listening on {addr}");
        let shutdown = hubbub::tools::shutdown_on_signal();
        hubbub_benches::plain::run(listener, shutdown).await?;
        Ok(())
    })
}
