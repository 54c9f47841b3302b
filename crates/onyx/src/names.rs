//! Generated names: the random suffix Argo appends to `generateName` (five lowercase letters
//! and digits, as Kubernetes' name generator draws them).

use rand::Rng;

pub fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}
