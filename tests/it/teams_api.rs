use serde_json::json;

use crate::support::{token_for, TestApp};

#[tokio::test]
async fn teams_and_organizations() {
    let app = TestApp::spawn().await;
    let (a, a_id) = app.signup("a@example.com").await;
    let (b, _) = app.signup("b@example.com").await;
    let r = app.post("/api/teams", &a, json!({"name": " Print Studio ", "description": "ink"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    insta::assert_json_snapshot!("team_created", r.body, {
        ".team.id" => "[id]", ".team.createdBy" => "[user]", ".team.createdAt" => "[ts]",
        ".team.members[].userId" => "[user]", ".team.members[].joinedAt" => "[ts]"
    });
    let tid = r.body["team"]["id"].as_str().unwrap().to_owned();
    let r = app.post("/api/teams", &a, json!({})).await;
    assert_eq!((r.status.as_u16(), r.body["message"].as_str()), (400, Some("Team name is required")));
    let r = app.post("/api/teams", &a, json!({"name": 5})).await;
    assert_eq!(r.body["field"], "Team name");
    assert_eq!(app.get(&format!("/api/teams/{tid}"), &a).await.body["team"]["name"], "Print Studio");
    let r = app.get(&format!("/api/teams/{tid}"), &b).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (403, Some("access_denied")));
    let r = app.get("/api/teams/nope", &b).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("team_not_found")));

    let r = app.post("/api/organizations", &a, json!({"name": "Northwind Creative"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["organization"]["role"], "admin");
    assert_eq!(r.body["organization"]["memberCount"], 1);
    let oid = r.body["organization"]["id"].as_str().unwrap().to_owned();
    let orgs = app.get("/api/organizations", &a).await;
    assert_eq!(orgs.body["organizations"].as_array().unwrap().len(), 2, "every team record the caller belongs to");
    assert_eq!(app.get("/api/teams", &a).await.body["teams"].as_array().unwrap().len(), 2);
    let r = app.get(&format!("/api/organizations/{oid}"), &b).await;
    assert_eq!(r.body["code"], "access_denied");
    let r = app.get("/api/organizations/none", &b).await;
    assert_eq!(r.body["code"], "organization_not_found");

    // A project may name a team its creator belongs to, and not another.
    let r = app.post("/api/projects", &a, json!({"name": "P", "teamId": tid, "organizationId": oid})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["project"]["teamId"], tid.as_str());
    let r = app.post("/api/projects", &b, json!({"name": "P", "teamId": tid})).await;
    assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (400, Some("Team ID")));
    let _ = a_id;
}

#[tokio::test]
async fn fixture_teams_are_listed_for_their_members() {
    let app = TestApp::with_fixtures().await;
    let marten = token_for("1756887342317", "marten.oberg@example.com");
    let teams = app.get("/api/teams", &marten).await;
    let names: Vec<&str> =
        teams.body["teams"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Mårten's Nordic Crew 🇸🇪"), "{names:?}");
    let priya = token_for("aaaaaaaa-0000-4000-8000-000000000002", "priya.raman@example.org");
    let orgs = app.get("/api/organizations", &priya).await;
    let org = orgs.body["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Example Org GmbH & Co. <KG>")
        .unwrap()
        .clone();
    assert_eq!(org["role"], "admin");
}
