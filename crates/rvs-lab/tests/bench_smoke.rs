//! `rvs-lab bench` end to end, shortened: one repetition of 1 s loads on
//! kernel-route and rvs-dr must produce a table with a real, non-zero
//! measurement in every cell that applies. Needs root and the workspace
//! binaries in the same profile (`cargo build -p rvsd -p rvsadm`).

use std::time::{Duration, Instant};

use rvs_lab::bench::{measure, BenchOptions, Cell, Metric};

#[test]
fn bench_measures_kernel_route_and_rvs_dr() {
    let started = Instant::now();
    let opts = BenchOptions {
        repetitions: 1,
        duration_secs: 1,
        only: Some(vec!["kernel-route".into(), "rvs-dr".into()]),
    };
    let report = measure(&opts).expect("valid options");
    let table = report.table();
    println!("{table}");
    assert!(report.errors.is_empty(), "errors:\n{table}");
    assert_eq!(report.setups, ["kernel-route", "rvs-dr"]);

    let rates = [
        Metric::UdpManyPps,
        Metric::UdpOnePps,
        Metric::UdpManyDelivered,
        Metric::HttpKeepAlive,
        Metric::HttpNewConn,
        Metric::SoftirqUsPerPacket,
    ];
    for setup in ["kernel-route", "rvs-dr"] {
        for m in rates {
            let v = report.cell(setup, m).and_then(Cell::median);
            assert!(
                v.is_some_and(|v| v > 0.0),
                "{setup} / {}: {v:?}\n{table}",
                m.label()
            );
        }
        // Every row is in the printed table, with a value per setup.
        for m in rates {
            let row = table
                .lines()
                .find(|l| l.starts_with(m.label()))
                .unwrap_or_else(|| panic!("no row {:?} in\n{table}", m.label()));
            assert_eq!(
                row[m.label().len()..].split_whitespace().count(),
                2,
                "{row}"
            );
        }
    }
    // rvsd is a process: its CPU per request is attributable and non-zero.
    for m in [Metric::DirectorUsPerRequest, Metric::DirectorUsPerConn] {
        let v = report.cell("rvs-dr", m).and_then(Cell::median);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "rvs-dr {}: {v:?}\n{table}",
            m.label()
        );
        assert!(matches!(
            report.cell("kernel-route", m),
            Some(Cell::NotApplicable(_))
        ));
    }
    // Balancing happened at all: UDP went to the servers, not just sent.
    let share = report
        .cell("rvs-dr", Metric::UdpManyDelivered)
        .and_then(Cell::median)
        .unwrap_or(0.0);
    assert!(
        share > 0.01,
        "rvs-dr delivered {share} of the datagrams\n{table}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the short run took {:?}",
        started.elapsed()
    );
}
