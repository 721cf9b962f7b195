//! Packages: `tidemark deps` installs a local folder, a git repository (made here, with a tag
//! and a subdirectory) and a tarball (served here on 127.0.0.1); their macros run under their
//! names, with `adapter.dispatch`, `dbt.*` macros, `return()` and a package's generic test.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Serves `body` to every request on a local port until the process ends; returns the URL.
fn serve(body: Vec<u8>, name: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}/{name}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

/// A gzipped tar archive of `folder`, under its own name (as release archives are).
fn tarball(folder: &Path) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    let name = folder.file_name().expect("name");
    archive.append_dir_all(name, folder).expect("archive");
    archive.into_inner().expect("tar").finish().expect("gzip")
}

fn git(folder: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(folder)
        .args([
            "-c",
            "user.email=tests@example.com",
            "-c",
            "user.name=tests",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn packages_from_a_folder_a_git_repository_and_a_tarball_run_under_their_names() {
    let fixture = fixture("packages");
    let root = fixture.path();
    // The git package: a repository with a tag, the package in a subdirectory; a later commit
    // after the tag must not be what is installed.
    let repository = root.join("text_utils_repo");
    git(&repository, &["init", "-q"]);
    git(&repository, &["add", "-A"]);
    git(&repository, &["commit", "-qm", "slugify"]);
    git(&repository, &["tag", "v1"]);
    let slugify = repository.join("text_utils/macros/slugify.sql");
    std::fs::write(&slugify, "{% macro slugify(column) %}broken({% endmacro %}\n").unwrap();
    git(&repository, &["commit", "-qam", "after the tag"]);
    let url = serve(tarball(&root.join("pack_utils")), "pack_utils.tar.gz");
    let project = root.join("project");
    let packages = std::fs::read_to_string(project.join("packages.yml")).unwrap();
    std::fs::write(
        project.join("packages.yml"),
        packages
            .replace("GIT_URL", &repository.display().to_string())
            .replace("TARBALL_URL", &url),
    )
    .unwrap();

    // Listed but not installed: said, with the command that installs them.
    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("3 packages are listed in packages.yml, 0 installed in dbt_packages/"),
        "{text}"
    );
    assert!(text.contains("run `tidemark deps`"), "{text}");

    let output = tidemark(&project, &["deps"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Installed 3 packages into dbt_packages/"), "{text}");
    for name in ["my_utils", "text_utils", "pack_utils"] {
        assert!(
            project
                .join("dbt_packages")
                .join(name)
                .join("dbt_project.yml")
                .is_file(),
            "{name}"
        );
    }
    assert!(!project.join("dbt_packages/text_utils/.git").exists());

    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // The package's generic test runs under its name.
    assert!(text.contains("PASS my_utils_at_least_products_amount"), "{text}");
    let table = table_csv(&project.join("warehouse/main/products/data.parquet"));
    // my_utils.star read the seed's columns from the warehouse (all but amount_cents); the
    // project's datafusion__cents_to_dollars won the dispatch; dbt.replace, dbt.concat,
    // dbt.hash and dbt.type_string came from dbt's namespace.
    let md5 = |text: &str| {
        let output = Command::new("python3")
            .args([
                "-c",
                "import hashlib,sys; print(hashlib.md5(sys.argv[1].encode()).hexdigest())",
                text,
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let expected = format!(
        "id,name,amount,slug,row_key\n1,Blue Mug,12.5,blue-mug,{}\n2,Red Cup,3.99,red-cup,{}\n3,Tea Pot,40.0,tea-pot,{}\n",
        md5("1Blue Mug"),
        md5("2Red Cup"),
        md5("3Tea Pot")
    );
    assert_eq!(table, expected);
    // The package's own seed and model are built too (the project made the model a table).
    assert!(
        text.contains("OK created sql table model main.currency_names"),
        "{text}"
    );
    assert_eq!(
        table_csv(&project.join("warehouse/main/currency_names/data.parquet")),
        "code,name\neur,EURO\nusd,DOLLAR\n"
    );
    let manifest = std::fs::read_to_string(project.join("target/manifest.json")).unwrap();
    assert!(manifest.contains("\"model.my_utils.currency_names\""), "{manifest}");
    assert!(manifest.contains("\"seed.my_utils.currencies\""), "{manifest}");
    // A package model with a root model's name: ref('my_utils', 'calendar') reads the
    // package's (written to its own schema), an unpinned ref('calendar') the project's.
    assert_eq!(
        table_csv(&project.join("warehouse/utils/calendar/data.parquet")),
        "day_number,made_by\n1,my_utils\n"
    );
    for model in ["calendar", "calendar_reader"] {
        assert_eq!(
            table_csv(&project.join(format!("warehouse/main/{model}/data.parquet"))),
            "day_number,made_by,read_by\n1,my_utils,shop\n",
            "{model}"
        );
    }
    let parsed: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        parsed["nodes"]["model.shop.calendar"]["depends_on"]["nodes"],
        serde_json::json!(["model.my_utils.calendar"])
    );
    assert_eq!(
        parsed["nodes"]["model.shop.calendar_reader"]["depends_on"]["nodes"],
        serde_json::json!(["model.shop.calendar"])
    );
    // Each property file describes its own package's model, and its tests test that one.
    assert_eq!(
        parsed["nodes"]["model.my_utils.calendar"]["description"],
        "The package's calendar."
    );
    assert_eq!(
        parsed["nodes"]["model.shop.calendar"]["description"],
        "The shop's calendar, read from the package's."
    );
    assert_eq!(
        parsed["nodes"]["test.shop.not_null_calendar_day_number"]["depends_on"]["nodes"],
        serde_json::json!(["model.my_utils.calendar"])
    );

    // Without the project's override, the package's default__ implementation is dispatched to.
    std::fs::remove_file(project.join("macros/overrides.sql")).unwrap();
    let output = tidemark(&project, &["build", "--select", "products"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    let table = table_csv(&project.join("warehouse/main/products/data.parquet"));
    assert!(table.contains("1,Blue Mug,12,"), "{table}");

    // package-lock.yml pins the tag's commit: moving the tag to another commit changes nothing
    // until `deps --upgrade` resolves it again.
    let commit_of = |revision: &str| {
        let output = Command::new("git")
            .current_dir(&repository)
            .args(["rev-parse", revision])
            .output()
            .expect("git rev-parse");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let tagged = commit_of("v1");
    let lock = std::fs::read_to_string(project.join("package-lock.yml")).expect("package-lock.yml");
    assert!(lock.contains(&format!("revision: {tagged}")), "{lock}");
    assert!(lock.contains("name: text_utils"), "{lock}");
    git(&repository, &["tag", "-f", "v1", "HEAD"]);
    let installed_slugify = project.join("dbt_packages/text_utils/macros/slugify.sql");
    let output = tidemark(&project, &["deps"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Installing the commits package-lock.yml pins"), "{text}");
    assert!(!std::fs::read_to_string(&installed_slugify).unwrap().contains("broken("));
    let output = tidemark(&project, &["deps", "--upgrade"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    assert!(std::fs::read_to_string(&installed_slugify).unwrap().contains("broken("));
    let lock = std::fs::read_to_string(project.join("package-lock.yml")).unwrap();
    assert!(lock.contains(&format!("revision: {}", commit_of("HEAD"))), "{lock}");

    // A dbt Hub entry needs the network: the error names the package and what works offline.
    std::fs::write(
        project.join("packages.yml"),
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n",
    )
    .unwrap();
    let output = tidemark(&project, &["deps"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("packages.yml:2:5: 'dbt-labs/dbt_utils' (version 1.3.0) is a dbt Hub package"),
        "{text}"
    );
    assert!(
        text.contains("git: https://github.com/dbt-labs/dbt_utils.git"),
        "{text}"
    );
    // A failed deps leaves the installed packages as they were.
    assert!(project.join("dbt_packages/my_utils/dbt_project.yml").is_file());
}
