//! `onyx usage report`: a month's GPU- and CPU-hours and their cost per namespace and queue,
//! and each namespace's artifact storage (GB-hours, on a row whose queue is `-`), from the
//! server's usage ledger (`GET /api/v1/usage`), as a table, JSON or CSV (one row a namespace
//! and queue, for a spreadsheet or a billing import).

use std::io::Write;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Csv,
}

/// One line of the report: a namespace's use of one queue.
struct Line {
    namespace: String,
    queue: String,
    gpu_hours: f64,
    cpu_hours: f64,
    storage_gb_hours: f64,
    cost: f64,
}

fn lines(report: &Value) -> Vec<Line> {
    let price = |k: &str| report["prices"][k].as_f64().unwrap_or(0.0);
    let (gpu_price, cpu_price) = (price("gpu_hour"), price("cpu_hour"));
    let storage_price = price("storage_gb_month") / 730.0;
    let mut out = Vec::new();
    for n in report["namespaces"].as_array().into_iter().flatten() {
        let hours = |field: &str, q: &str| n[field][q].as_f64().unwrap_or(0.0);
        let mut queues: Vec<&str> = n["queues"]
            .as_object()
            .into_iter()
            .chain(n["cpuQueues"].as_object())
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        queues.sort_unstable();
        queues.dedup();
        for q in queues {
            let (gpu_hours, cpu_hours) = (hours("queues", q), hours("cpuQueues", q));
            out.push(Line {
                namespace: n["namespace"].as_str().unwrap_or_default().to_string(),
                queue: q.to_string(),
                gpu_hours,
                cpu_hours,
                storage_gb_hours: 0.0,
                cost: gpu_hours * gpu_price + cpu_hours * cpu_price,
            });
        }
        let storage = n["storageGbHours"].as_f64().unwrap_or(0.0);
        if n["storageBytes"].as_u64().unwrap_or(0) > 0 {
            out.push(Line {
                namespace: n["namespace"].as_str().unwrap_or_default().to_string(),
                queue: "-".into(),
                gpu_hours: 0.0,
                cpu_hours: 0.0,
                storage_gb_hours: storage,
                cost: storage * storage_price,
            });
        }
    }
    out
}

/// Print `report` (the API's answer) in `format` to `out`.
pub fn print(report: &Value, format: ReportFormat, out: &mut dyn Write) -> anyhow::Result<()> {
    let currency = report["currency"].as_str().unwrap_or("USD");
    match format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(report)?)?,
        ReportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "month",
                "namespace",
                "queue",
                "gpu_hours",
                "cpu_hours",
                "storage_gb_hours",
                "cost",
                "currency",
            ])?;
            let month = report["month"].as_str().unwrap_or_default();
            for l in lines(report) {
                w.write_record([
                    month,
                    &l.namespace,
                    &l.queue,
                    &format!("{:.6}", l.gpu_hours),
                    &format!("{:.6}", l.cpu_hours),
                    &format!("{:.6}", l.storage_gb_hours),
                    &format!("{:.2}", l.cost),
                    currency,
                ])?;
            }
            w.flush().context("writing the CSV")?;
        }
        ReportFormat::Table => {
            let mut rows = vec![[
                "NAMESPACE",
                "QUEUE",
                "GPU-HOURS",
                "CPU-HOURS",
                "STORAGE-GB-HOURS",
                "COST",
            ]
            .map(String::from)
            .to_vec()];
            for l in lines(report) {
                rows.push(vec![
                    l.namespace,
                    l.queue,
                    format!("{:.2}", l.gpu_hours),
                    format!("{:.2}", l.cpu_hours),
                    format!("{:.2}", l.storage_gb_hours),
                    format!("{:.2} {currency}", l.cost),
                ]);
            }
            let total = |k: &str| report[k].as_f64().unwrap_or(0.0);
            rows.push(vec![
                "TOTAL".into(),
                String::new(),
                format!("{:.2}", total("totalGpuHours")),
                format!("{:.2}", total("totalCpuHours")),
                format!("{:.2}", total("totalStorageGbHours")),
                format!("{:.2} {currency}", total("totalCost")),
            ]);
            let widths: Vec<usize> = (0..6)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            writeln!(
                out,
                "usage for {} (UTC); a MIG instance counts as its share of a GPU; queue - is a namespace's artifact storage",
                report["month"].as_str().unwrap_or_default()
            )?;
            for r in rows {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", cells.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({"month": "2026-11", "currency": "JPY",
               "prices": {"currency": "JPY", "gpu_hour": 450.0, "cpu_hour": 5.0, "storage_gb_month": 730.0},
               "totalGpuHours": 16.5, "totalCpuHours": 10.0, "totalStorageGbHours": 2.0, "totalCost": 7477.0,
               "namespaces": [
                 {"namespace": "vision", "gpuHours": 16.5, "cpuHours": 10.0,
                  "storageBytes": 1000000000, "storageGbHours": 2.0,
                  "queues": {"dedicated": 16.0, "shared": 0.5},
                  "cpuQueues": {"dedicated": 8.0, "shared": 2.0}}]})
    }

    #[test]
    fn csv_has_a_row_a_namespace_and_queue_with_its_cost() {
        let mut out = Vec::new();
        print(&report(), ReportFormat::Csv, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "month,namespace,queue,gpu_hours,cpu_hours,storage_gb_hours,cost,currency\n\
             2026-11,vision,dedicated,16.000000,8.000000,0.000000,7240.00,JPY\n\
             2026-11,vision,shared,0.500000,2.000000,0.000000,235.00,JPY\n\
             2026-11,vision,-,0.000000,0.000000,2.000000,2.00,JPY\n"
        );
    }

    #[test]
    fn the_table_ends_with_the_totals() {
        let mut out = Vec::new();
        print(&report(), ReportFormat::Table, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let cells = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[1]),
            [
                "NAMESPACE",
                "QUEUE",
                "GPU-HOURS",
                "CPU-HOURS",
                "STORAGE-GB-HOURS",
                "COST"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "vision",
                "dedicated",
                "16.00",
                "8.00",
                "0.00",
                "7240.00",
                "JPY"
            ]
        );
        assert_eq!(
            cells(lines[4]),
            ["vision", "-", "0.00", "0.00", "2.00", "2.00", "JPY"]
        );
        assert_eq!(
            cells(lines[5]),
            ["TOTAL", "16.50", "10.00", "2.00", "7477.00", "JPY"]
        );
        // Columns line up: every figure of a column starts where its heading does.
        let at = lines[1].find("GPU-HOURS").unwrap();
        assert!(lines[2..]
            .iter()
            .all(|l| l[at..].starts_with(|c: char| c.is_ascii_digit())));
    }
}
