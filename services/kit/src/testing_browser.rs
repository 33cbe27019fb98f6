//! A real headless Chromium for the services' browser tests, driven over
//! WebDriver through chromedriver (both from Debian; scripts/test-setup.sh
//! installs them).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver, a browser session on it and a throwaway profile; all
/// three end when this is dropped.
pub struct Chromium {
    pub client: fantoccini::Client,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Chromium {
    pub async fn start() -> Chromium {
        let bin = crate::testing::tool("ESHOP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/test-setup.sh",
                    bin.display()
                )
            });
        let profile =
            std::env::temp_dir().join(format!("eshop-chromium-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "chromedriver did not start on port {port}");
        let chromium = crate::testing::tool("ESHOP_TEST_CHROMIUM", "/usr/bin/chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                // No sandbox as root in CI; no background traffic on a closed network.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", "--disable-quic", format!("--user-data-dir={}", profile.display())]
            }),
        );
        let client = fantoccini::ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver session");
        Chromium {
            client,
            driver,
            profile,
        }
    }
}
