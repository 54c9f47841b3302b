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
    starts(layout).is_some()
}

/// The memory slice each instance starts at, in `layout`'s order, or `None` when they do not
/// fit together. The placement is canonical — the largest instances first, each at its lowest
/// free start — so a layout has one answer whatever order it was made in.
pub fn starts(layout: &[String]) -> Option<Vec<u32>> {
    let items: Vec<&Profile> = layout.iter().map(|p| profile(p)).collect::<Option<_>>()?;
    if items.iter().map(|p| p.compute).sum::<u32>() > 7 {
        return None;
    }
    for p in PROFILES {
        if items.iter().filter(|x| x.name == p.name).count() as u32 > p.max {
            return None;
        }
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].memory), i));
    fn go(items: &[&Profile], order: &[usize], used: &mut [bool; 8], at: &mut [u32]) -> bool {
        let Some((&i, rest)) = order.split_first() else {
            return true;
        };
        let p = items[i];
        for &s in p.starts {
            let r = s as usize..(s + p.memory) as usize;
            if r.end <= 8 && used[r.clone()].iter().all(|u| !u) {
                used[r.clone()].iter_mut().for_each(|u| *u = true);
                at[i] = s;
                if go(items, rest, used, at) {
                    return true;
                }
                used[r].iter_mut().for_each(|u| *u = false);
            }
        }
        false
    }
    let mut at = vec![0; items.len()];
    go(&items, &order, &mut [false; 8], &mut at).then_some(at)
}

/// A layout as `nvidia-smi mig -lgi` lists it: by start slot.
pub fn by_start(layout: &[String]) -> Vec<String> {
    match starts(layout) {
        Some(at) => {
            let mut pairs: Vec<(u32, &String)> = at.into_iter().zip(layout).collect();
            pairs.sort();
            pairs.into_iter().map(|(_, p)| p.clone()).collect()
        }
        None => layout.to_vec(),
    }
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

    #[test]
    fn layouts_are_listed_by_start_slot_whatever_order_they_were_made_in() {
        let want = l(&["3g.40gb", "2g.20gb", "1g.10gb"]);
        assert_eq!(by_start(&l(&["1g.10gb", "2g.20gb", "3g.40gb"])), want);
        assert_eq!(by_start(&l(&["2g.20gb", "1g.10gb", "3g.40gb"])), want);
        assert_eq!(
            starts(&l(&["1g.10gb", "2g.20gb", "3g.40gb"])),
            Some(vec![6, 4, 0])
        );
        // Four 1g instances push the 3g instance to the upper half.
        assert_eq!(
            by_start(&l(&["3g.40gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"])),
            l(&["1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "3g.40gb"])
        );
    }
}
