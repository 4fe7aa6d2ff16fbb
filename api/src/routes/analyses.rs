//! `GET /v1/analyses`: the analyses a client may ask for here, from the catalogue, so that
//! clients (the creators' page among them) build their choices from the server rather than
//! from a copy of the list.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use reelq_shared::catalogue::{AnalysisSpec, CATALOGUE, Visibility};

use crate::state::{AppState, AuthTenant};

/// The analyses this api accepts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisList {
    /// In the catalogue's order.
    pub analyses: Vec<AnalysisSpec>,
}

/// Whether a client may request an analysis of this visibility here.
fn listed(visibility: Visibility, allow_diagnostics: bool) -> bool {
    match visibility {
        Visibility::Public => true,
        Visibility::Diagnostic => allow_diagnostics,
        Visibility::Internal => false,
    }
}

/// The analyses a job can ask for.
///
/// The public analyses, and the diagnostic ones where this deployment allows them; internal
/// analyses are never listed. Each says what it finds, what it needs, which `options` keys it
/// reads, the type of its result and how the creators' page offers it (`offer`).
#[utoipa::path(
    get, path = "/v1/analyses", tag = "jobs",
    responses((status = 200, description = "The analyses, in the catalogue's order", body = AnalysisList)),
    security(("api_key" = []))
)]
pub async fn list_analyses(State(state): State<AppState>, _tenant: AuthTenant) -> Json<AnalysisList> {
    let allow = state.settings.api.allow_diagnostics;
    Json(AnalysisList { analyses: CATALOGUE.iter().filter(|s| listed(s.visibility, allow)).copied().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_analyses_are_never_listed_and_diagnostic_ones_only_when_allowed() {
        for allow in [false, true] {
            let names: Vec<&str> = CATALOGUE.iter().filter(|s| listed(s.visibility, allow)).map(|s| s.name.as_str()).collect();
            assert!(!names.contains(&"train"), "{names:?}");
            assert_eq!(names.contains(&"noop"), allow, "{names:?}");
            assert!(names.contains(&"probe") && names.contains(&"virality"), "{names:?}");
        }
    }
}
