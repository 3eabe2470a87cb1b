//! Who may use the control socket: root everything; with a read-only
//! group, its members list but are refused every command (403,
//! `permission_denied`); a user outside it cannot even connect. The
//! clients that are not root are curl run as `nobody`, in the group (as
//! its primary group) or not; the group is made here, with a name unique
//! to this test run, and removed again also when the test fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rvs_api::server::Limits;
use rvs_api::testing::{empty_listing, FakeHandler, Served};
use rvs_api::{Access, Client, Command as Cmd, ReadOnlyGroup};

const NOBODY: u32 = 65534;

/// A group made for the test, deleted when dropped.
struct TestGroup {
    name: String,
    gid: u32,
}

impl TestGroup {
    /// `tag` tells apart the groups of tests running at once.
    fn new(tag: &str) -> TestGroup {
        let name = format!("rvsacc{}{tag}", std::process::id());
        let out = Command::new("groupadd").arg(&name).output().unwrap();
        assert!(out.status.success(), "groupadd {name}: {out:?}");
        let group = TestGroup { name, gid: 0 };
        let out = Command::new("getent")
            .args(["group", &group.name])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let gid = line.split(':').nth(2).and_then(|g| g.parse().ok());
        TestGroup {
            gid: gid.unwrap_or_else(|| panic!("no gid for {}: {line:?}", group.name)),
            name: group.name.clone(),
        }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

/// curl as `nobody` with primary group `gid`: (exit code, HTTP status, body).
fn curl_as(gid: u32, socket: &Path, args: &[&str], url_path: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(socket)
        .args(args)
        .arg(format!("http://rvsd{url_path}"))
        .uid(NOBODY)
        .gid(gid)
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A directory anybody may enter, so that only the socket's own mode
/// decides who connects.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_read_only_group_lists_but_changes_nothing_and_others_stay_out() {
    let group = TestGroup::new("r");
    let dir = open_dir();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start_with_access(
        &path,
        FakeHandler::new(empty_listing(), Vec::new()),
        Limits::default(),
        Access {
            read_only_group: Some(ReadOnlyGroup {
                gid: group.gid,
                name: group.name.clone(),
            }),
        },
    )
    .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, group.gid));

    // A member lists services and connections.
    let (code, out) = curl_as(group.gid, &path, &[], "/v1/services");
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("\n200"), "{out}");
    let listing: rvs_api::Listing = serde_json::from_str(out.rsplit_once('\n').unwrap().0).unwrap();
    assert_eq!(listing, empty_listing());
    let (_, out) = curl_as(group.gid, &path, &[], "/v1/connections");
    assert!(out.ends_with("\n200"), "{out}");

    // ... and is refused every command, by kind, naming the group.
    let (_, out) = curl_as(
        group.gid,
        &path,
        &["-X", "POST", "--data", r#"{"delete_service":{"fwmark":1}}"#],
        "/v1/commands",
    );
    assert!(out.ends_with("\n403"), "{out}");
    assert!(out.contains(r#""kind":"permission_denied""#), "{out}");
    assert!(
        out.contains(&format!(
            "permission denied: this socket grants read-only access to group {}",
            group.name
        )),
        "{out}"
    );
    assert!(
        served.handler.seen().is_empty(),
        "a refused command applied"
    );

    // Outside the group: the socket's mode keeps nobody out (curl exit 7,
    // cannot connect).
    let (code, out) = curl_as(NOBODY, &path, &[], "/v1/services");
    assert_eq!(code, 7, "connected without the group: {out}");

    // Root does everything.
    let client = Client::new(&path);
    assert_eq!(client.listing().unwrap(), empty_listing());
    client.command(&Cmd::Clear).unwrap();
    assert_eq!(served.handler.seen(), vec![Cmd::Clear]);
}

/// Without a group the socket stays 0600: even a client that would be in
/// a group cannot connect, and root still can.
#[test]
fn without_a_group_only_root_connects() {
    let group = TestGroup::new("n");
    let dir = open_dir();
    let path = dir.path().join("rvsd.sock");
    let served = Served::start(&path, FakeHandler::new(empty_listing(), Vec::new())).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, out) = curl_as(group.gid, &path, &[], "/v1/services");
    assert_eq!(code, 7, "connected to a root-only socket: {out}");
    let client = Client::new(&path);
    client.command(&Cmd::Clear).unwrap();
    assert_eq!(served.handler.seen(), vec![Cmd::Clear]);
}
