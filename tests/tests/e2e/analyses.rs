//! `GET /v1/analyses`: the catalogue's entries a client may request, and nothing internal.

use serde_json::Value;

use reelq_shared::catalogue::{CATALOGUE, Visibility};
use reelq_tests::{TestApp, TestEnv};

/// The catalogue's entries of these visibilities, as the api should serialise them, in order.
fn expected(visible: &[Visibility]) -> Vec<Value> {
    CATALOGUE.iter().filter(|s| visible.contains(&s.visibility)).map(|s| serde_json::to_value(s).expect("serialises")).collect()
}

/// An api with diagnostic analyses allowed or not.
async fn spawn(allow_diagnostics: bool) -> (TestEnv, TestApp) {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.allow_diagnostics = allow_diagnostics;
    let app = TestApp::spawn(&env, settings).await;
    (env, app)
}

async fn listed(app: &TestApp) -> Vec<Value> {
    let resp = app.http.get(app.url("/v1/analyses")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["analyses"].as_array().expect("an array of analyses").clone()
}

fn names(specs: &[Value]) -> Vec<&str> {
    specs.iter().map(|s| s["name"].as_str().expect("a name")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_is_needed_and_only_public_analyses_are_listed_without_diagnostics() {
    // Arrange
    let (env, app) = spawn(false).await;

    // Act
    let anonymous = app.http.get(app.url("/v1/analyses")).send().await.expect("sent");
    let wrong = app.http.get(app.url("/v1/analyses")).bearer_auth("rq_deadbeef_notakey").send().await.expect("sent");
    let specs = listed(&app).await;

    // Assert
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["content-type"], "application/problem+json");
    let problem: Value = anonymous.json().await.expect("json");
    assert_eq!(problem["code"], "unauthorized");
    assert_eq!(wrong.status(), 401);
    let public = expected(&[Visibility::Public]);
    assert!(!public.is_empty());
    assert_eq!(names(&specs), names(&public), "exactly the public analyses, in the catalogue's order");
    assert_eq!(specs, public, "each entry as the catalogue defines it");
    assert!(!names(&specs).contains(&"train"));
    assert!(specs.iter().all(|s| s["offer"] != "never"), "every public analysis is offered somehow: {specs:#?}");

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnostic_analyses_are_listed_where_allowed_and_internal_ones_never() {
    // Arrange
    let (env, app) = spawn(true).await;

    // Act
    let specs = listed(&app).await;

    // Assert
    let allowed = expected(&[Visibility::Public, Visibility::Diagnostic]);
    assert!(allowed.len() > expected(&[Visibility::Public]).len(), "the catalogue has a diagnostic analysis to list");
    assert_eq!(specs, allowed);
    let internal: Vec<&str> = CATALOGUE.iter().filter(|s| s.visibility == Visibility::Internal).map(|s| s.name.as_str()).collect();
    assert!(internal.contains(&"train"));
    assert!(names(&specs).iter().all(|n| !internal.contains(n)), "{:?}", names(&specs));

    app.stop().await;
    env.cleanup().await;
}
