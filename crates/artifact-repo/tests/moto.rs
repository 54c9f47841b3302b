//! The repository against a real S3-compatible server (moto's, from PyPI): put, get, size and
//! delete of a file and of a directory stored as objects under a prefix.

use artifact_repo::{Repository, S3Config};

#[tokio::test]
async fn files_and_directories_round_trip_through_a_bucket() {
    let Some(moto) = test_s3::Moto::start() else {
        return;
    };
    moto.make_bucket("onyx-bucket");
    let dir = std::env::temp_dir().join(format!("onyx-repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("access"), "id").unwrap();
    std::fs::write(dir.join("secret"), "key").unwrap();
    std::fs::write(dir.join("one.txt"), "one").unwrap();
    std::fs::write(dir.join("tree/a.txt"), "a").unwrap();
    std::fs::write(dir.join("tree/sub/b.txt"), "bb").unwrap();
    let config: S3Config = serde_json::from_value(serde_json::json!({
        "endpoint": moto.endpoint(),
        "bucket": "onyx-bucket",
        "insecure": true,
        "access_key_file": dir.join("access"),
        "secret_key_file": dir.join("secret"),
    }))
    .unwrap();
    let repo = Repository::S3(config);
    assert_eq!(
        repo.put("w/p/one.txt", &dir.join("one.txt")).await.unwrap(),
        3
    );
    assert_eq!(repo.put("w/p/tree", &dir.join("tree")).await.unwrap(), 3);
    assert_eq!(repo.size("w/p/one.txt").await.unwrap(), 3);
    assert_eq!(repo.size("w/p/tree").await.unwrap(), 3);
    repo.get("w/p/one.txt", &dir.join("back.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("back.txt")).unwrap(),
        "one"
    );
    repo.get("w/p/tree", &dir.join("back")).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("back/sub/b.txt")).unwrap(),
        "bb"
    );
    let missing = repo.get("w/p/nothing", &dir.join("x")).await.unwrap_err();
    assert!(
        missing.to_string().contains("s3://onyx-bucket/w/p/nothing"),
        "{missing}"
    );
    repo.delete("w/p/tree").await.unwrap();
    assert_eq!(repo.size("w/p/tree").await.unwrap(), 0);
}
