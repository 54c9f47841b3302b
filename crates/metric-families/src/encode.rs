//! The encoding helpers every family uses: a family of gauges, of histograms, and Argo's
//! counters under their own names.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

pub(crate) type L<'a> = Vec<(&'a str, String)>;

pub(crate) fn gauges<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L<'a>, f64)>,
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Gauge, rows)
}

pub(crate) fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (L<'a>, f64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// An Argo counter under its own name (see the module's note on `untyped`).
pub(crate) fn argo_counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Unknown, [(Vec::new(), v)])
}

pub(crate) fn histograms<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L<'a>, &'a Histogram)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        h.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}
