//! What signing costs per request: `cargo bench -p jifen-adapter --bench signing`. Builds one
//! deduct request (parameters, encoding, signature, headers) many times for each kind of
//! signature the adapter makes, and prints the time per request. A timing goal lives here,
//! never in a test.

use std::path::Path;
use std::time::Instant;

use jifen_adapter::AdapterConfig;
use jifen_adapter::request::build;
use jifen_adapter::template::Values;

const RSA_KEY: &str = include_str!("../testdata/rsa-test-key.pem");

fn config(dir: &Path, signing: &str) -> AdapterConfig {
    let text = format!(
        r#"
channel_id = "bench"
base_url = "http://127.0.0.1:1"
timestamp = "yyyy-MM-dd HH:mm:ss"
utc_offset = "+08:00"
capabilities = {{ idempotent_deduct = true, refund = false, query = false, null_compensation = false, anti_hanging = false }}
[params]
app_id = "jifen-bench"
timestamp = "{{timestamp}}"
nonce = "{{nonce}}"
{signing}
[deduct]
url = "/gateway"
params = {{ method = "points.deduct", biz_content = '{{"out_trade_no": "{{key}}", "user_id": "{{user_id}}", "points": {{points}}}}' }}
json_params = ["biz_content"]
"#
    );
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("write the config");
    AdapterConfig::parse(
        &path,
        &std::fs::read_to_string(&path).expect("read it back"),
    )
    .expect("a valid config")
}

fn main() {
    let dir = std::env::temp_dir().join(format!("jifen-signing-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp folder");
    std::fs::write(dir.join("secret"), "a-shared-secret").expect("a secret");
    std::fs::write(dir.join("rsa.pem"), RSA_KEY).expect("a key");
    let sorted = |algorithm: &str, key: &str, message: &str| {
        format!(
            "[signing]\nalgorithm = \"{algorithm}\"\nkey = {{ file = \"{key}\" }}\n\
             canonical = \"sorted_params\"\n{message}output = \"hex_upper\"\nparam = \"sign\"\n"
        )
    };
    let cases = [
        ("unsigned", String::new()),
        (
            "md5",
            sorted("md5", "secret", "message = \"{string}&key={secret}\"\n"),
        ),
        ("hmac-sha256", sorted("hmac-sha256", "secret", "")),
        ("rsa-sha256 (2048)", sorted("rsa-sha256", "rsa.pem", "")),
    ];
    let values = Values {
        order_id: "order-000123",
        user_id: "user-42",
        channel_id: "bench",
        points: 1250,
        key: "order-000123:user-42",
        timestamp: "2026-12-05 18:00:00",
        nonce: "0123456789abcdef0123456789abcdef",
        ..Values::default()
    };
    for (name, signing) in cases {
        let config = config(&dir, &signing);
        let rounds = if name.starts_with("rsa") {
            2_000
        } else {
            50_000
        };
        // Warm up, then measure.
        for _ in 0..rounds / 10 {
            std::hint::black_box(build(&config, &config.deduct, &values).expect("built"));
        }
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(build(&config, &config.deduct, &values).expect("built"));
        }
        let per = started.elapsed() / rounds;
        println!(
            "{name:>20}: {:>8.2} µs per request",
            per.as_secs_f64() * 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
