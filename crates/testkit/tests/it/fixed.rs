//! The fixed-reply upstream of the gateway benchmark.

use sparklio_testkit::fixed::{serve_fixed, FixedReply};
use std::collections::HashMap;

#[tokio::test]
async fn answers_each_path_its_bytes_and_404_elsewhere() {
    let reply = "{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"done\":true}\n";
    let table = HashMap::from([(
        "/api/chat".to_string(),
        FixedReply {
            content_type: "application/x-ndjson".into(),
            body: reply.into(),
        },
    )]);
    let (addr, task) = serve_fixed(0, table).await.unwrap();
    let client = reqwest::Client::new();
    // Twice on one keep-alive connection: the unread request body must not break it.
    for _ in 0..2 {
        let r = client
            .post(format!("http://{addr}/api/chat"))
            .body("{\"model\":\"m\",\"messages\":[]}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        assert_eq!(r.text().await.unwrap(), reply);
    }
    let r = client
        .get(format!("http://{addr}/api/tags"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    task.abort();
}
