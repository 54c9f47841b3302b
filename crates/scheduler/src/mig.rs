//! MIG geometry of the 80 GB H100 and A100 (NVIDIA MIG user guide): 7 compute and 8 memory
//! slices; each profile uses some of each and may start only at given memory slices.

pub struct Profile {
    pub name: &'static str,
    pub compute: u32,
    pub memory: u32,
    pub max: u32,
    pub starts: &'static [u32],
}

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "1g.10gb",
        compute: 1,
        memory: 1,
        max: 7,
        starts: &[0, 1, 2, 3, 4, 5, 6],
    },
    Profile {
        name: "1g.20gb",
        compute: 1,
        memory: 2,
        max: 4,
        starts: &[0, 2, 4, 6],
    },
    Profile {
        name: "2g.20gb",
        compute: 2,
        memory: 2,
        max: 3,
        starts: &[0, 2, 4],
    },
    Profile {
        name: "3g.40gb",
        compute: 3,
        memory: 4,
        max: 2,
        starts: &[0, 4],
    },
    Profile {
        name: "4g.40gb",
        compute: 4,
        memory: 4,
        max: 1,
        starts: &[0],
    },
    Profile {
        name: "7g.80gb",
        compute: 7,
        memory: 8,
        max: 1,
        starts: &[0],
    },
];

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn compute_slices(name: &str) -> Option<u32> {
    profile(name).map(|p| p.compute)
}

/// Whether a GPU can hold these instances at once: compute slices, per-profile limits, and
/// a placement of every instance at an allowed start within the 8 memory slices.
pub fn fits(layout: &[String]) -> bool {
    let Some(mut items): Option<Vec<&Profile>> = layout.iter().map(|p| profile(p)).collect() else {
        return false;
    };
    if items.iter().map(|p| p.compute).sum::<u32>() > 7 {
        return false;
    }
    for p in PROFILES {
        if items.iter().filter(|x| x.name == p.name).count() as u32 > p.max {
            return false;
        }
    }
    items.sort_by_key(|p| std::cmp::Reverse(p.memory));
    fn go(items: &[&Profile], used: &mut [bool; 8]) -> bool {
        let Some((p, rest)) = items.split_first() else {
            return true;
        };
        for &s in p.starts {
            let r = s as usize..(s + p.memory) as usize;
            if r.end <= 8 && used[r.clone()].iter().all(|u| !u) {
                used[r.clone()].iter_mut().for_each(|u| *u = true);
                if go(rest, used) {
                    return true;
                }
                used[r].iter_mut().for_each(|u| *u = false);
            }
        }
        false
    }
    go(&items, &mut [false; 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn geometry() {
        assert!(fits(&l(&["1g.10gb"; 7])));
        assert!(!fits(&l(&["1g.10gb"; 8])));
        assert!(fits(&l(&["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"])));
        assert!(fits(&l(&["4g.40gb", "3g.40gb"])));
        assert!(!fits(&l(&["4g.40gb", "4g.40gb"])));
        assert!(!fits(&l(&["7g.80gb", "1g.10gb"])));
        assert!(fits(&l(&["1g.20gb", "1g.20gb", "1g.20gb", "1g.10gb"])));
        assert!(!fits(&l(&["5g.50gb"])));
    }
}
