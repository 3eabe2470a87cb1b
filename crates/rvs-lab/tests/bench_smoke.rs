//! `rvs-lab bench` end to end, shortened: one repetition of 1 s loads on
//! kernel-route and rvs-dr must produce a table with a real, non-zero
//! measurement in every cell. Needs root, clang-built XDP programs (the
//! crate's build script) and the workspace binaries in the same profile
//! (`cargo build -p rvsd -p rvsadm`).

use std::time::{Duration, Instant};

use rvs_lab::bench::{measure, BenchOptions, Cell, Metric};

#[test]
fn bench_measures_kernel_route_and_rvs_dr() {
    let started = Instant::now();
    let opts = BenchOptions {
        repetitions: 1,
        duration_secs: 1,
        only: Some(vec!["kernel-route".into(), "rvs-dr".into()]),
        queues: 2,
        // A dense table: rvsd takes the key, and the table says so.
        fast_path_slots: Some(1 << 17),
        svg: None,
    };
    let report = measure(&opts).expect("valid options");
    let table = report.table();
    println!("{table}");
    assert!(report.errors.is_empty(), "errors:\n{table}");
    assert!(
        table.contains("rvsd with fast_path_slots = 131072"),
        "{table}"
    );
    assert_eq!(report.setups, ["kernel-route", "rvs-dr"]);

    let all = [
        Metric::UdpManySent,
        Metric::UdpManyPps,
        Metric::UdpManyDelivered,
        Metric::UdpManyUs,
        Metric::UdpOneSent,
        Metric::UdpOnePps,
        Metric::UdpOneDelivered,
        Metric::UdpOneUs,
        Metric::HttpKeepAlive,
        Metric::HttpKeepAliveUs,
        Metric::HttpNewConn,
        Metric::HttpNewConnUs,
    ];
    for setup in ["kernel-route", "rvs-dr"] {
        // Every cell holds a measurement: the director's CPU is attributable
        // for the kernel's forwarding (its NAPI threads) as for rvsd.
        for m in all {
            let v = report.cell(setup, m).and_then(Cell::median);
            assert!(
                v.is_some_and(|v| v > 0.0),
                "{setup} / {}: {v:?}\n{table}",
                m.label()
            );
        }
        // Every row is in the printed table, with a value per setup.
        for m in all {
            let row = table
                .lines()
                .find(|l| l.starts_with(m.label()))
                .unwrap_or_else(|| panic!("no row {:?} in\n{table}", m.label()));
            assert!(
                row[m.label().len()..].split_whitespace().count() >= 2,
                "{row}"
            );
        }
        // The generator offered more than was delivered or the table says
        // it did not saturate; either way delivery is a share of it.
        let share = report
            .cell(setup, Metric::UdpManyDelivered)
            .and_then(Cell::median)
            .unwrap_or(0.0);
        assert!(
            share > 0.01 && share <= 1.0 + 1e-9,
            "{setup} delivered {share} of the frames\n{table}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the short run took {:?}",
        started.elapsed()
    );
}
