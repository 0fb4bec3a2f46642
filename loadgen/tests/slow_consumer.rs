//! What a slow consumer costs the others: `loadgen latency --stalled` run as a user runs it,
//! against a broker started here with a small slow-consumer limit (`--max-pending 64K`), so
//! that the stalled subscribers are cut off within a short run. The default 8 MiB takes
//! seconds per stalled subscriber to fill.

mod common;

use common::{broker, loadgen, summary, tempdir, u};

/// Two subscribers that never read, on a broker that cuts a connection off past 64 KiB of
/// pending output: both are closed during the run, the broker counts them as slow consumers,
/// and the twenty healthy subscribers get every message, counted without the stalled two.
#[test]
fn stalled_subscribers_are_cut_off_and_the_others_get_everything() {
    let broker = broker(&["--max-pending", "64K"]);
    let dir = tempdir("stalled");
    let (addr, pid) = (broker.addr.to_string(), broker.pid().to_string());
    let args = [
        "latency",
        "--target",
        &addr,
        "--broker-pid",
        &pid,
        "--subscribers",
        "20",
        "--stalled",
        "2",
        "--rate",
        "2000",
        "--size",
        "512",
        "--duration",
        "3s",
        "--out",
        dir.to_str().unwrap(),
    ];
    let run = loadgen(&args);
    let everything = format!("{}\n--- broker log\n{}", run.transcript(), broker.log());
    assert_eq!(run.code(), Some(0), "{everything}");
    let stdout = &run.stdout;

    let s = summary(&dir);
    assert_eq!(s["kind"], "latency");
    assert_eq!(u(&s["subscribers"]), 20, "the stalled are not subscribers");
    assert_eq!(u(&s["stalled"]), 2);
    assert_eq!(
        u(&s["stalled_disconnected"]),
        2,
        "both stalled subscribers closed by the broker\n{everything}"
    );

    let steps = s["steps"].as_array().unwrap();
    let mut slow_consumers = 0;
    for step in steps {
        assert_eq!(u(&step["clients"]), 20, "only the healthy are clients");
        // One channel: each publish is owed to the 20 healthy subscribers, not to the 22.
        assert_eq!(u(&step["expected"]), 20 * u(&step["published"]));
        assert!(u(&step["published"]) > 0);
        assert_eq!(
            u(&step["delivered"]),
            u(&step["expected"]),
            "every healthy delivery arrived\n{everything}"
        );
        assert_eq!(u(&step["lost"]), 0);
        assert!(step["broker_alive"].as_bool().unwrap());
        slow_consumers += u(&step["broker_slow_consumers"]);
    }
    assert!(
        slow_consumers >= 2,
        "the broker counted {slow_consumers} slow consumers\n{everything}"
    );
    assert!(
        stdout.contains("stalled subscribers: 2, closed by the broker during the run: 2;"),
        "{everything}"
    );
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Stalled subscribers"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
