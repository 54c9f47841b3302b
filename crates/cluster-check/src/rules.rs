//! The rules. Each pushes findings; none does I/O. They live in modules by what they check:
//! the physical build, the parts of a node, the network, GPU scheduling and the software.

mod hardware;
mod network;
mod physical;
mod report;
mod scheduling;
mod software;

use cluster_model::{Catalogue, Cluster};

use crate::finding::Finding;
use report::Out;

pub fn all(c: &Cluster, cat: &Catalogue, today: &str, out: &mut Vec<Finding>) {
    let mut o = Out(out);
    physical::electrical(c, cat, &mut o);
    physical::space(c, cat, &mut o);
    hardware::compat(c, cat, &mut o);
    hardware::interconnect(c, cat, &mut o);
    network::addressing(c, &mut o);
    network::ports(c, &mut o);
    software::control_plane(c, &mut o);
    software::storage(c, &mut o);
    software::versions(c, cat, today, &mut o);
    scheduling::mig(c, cat, &mut o);
    software::operations(c, &mut o);
    software::monitoring(c, &mut o);
}
