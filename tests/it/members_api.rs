use reqwest::Method;
use serde_json::json;

use crate::support::{token_for, TestApp};

#[tokio::test]
async fn member_management_follows_the_role_rules() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = app.signup("owner@example.com").await;
    let (admin, admin_id) = app.signup("admin@example.com").await;
    let (member, member_id) = app.signup("member@example.com").await;
    let (_, other_id) = app.signup("other@example.com").await;
    let pid = app.create_project(&owner, "Team work").await;
    let members = format!("/api/projects/{pid}/members");

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = app.post(&members, &owner, json!({"email": "ADMIN@example.com", "role": "admin"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    insta::assert_json_snapshot!("member_added", r.body, { ".member.userId" => "[user]", ".member.joinedAt" => "[ts]" });
    // Members list by joinedAt then id; distinct milliseconds make the expected order deterministic.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = app.post(&members, &admin, json!({"userId": member_id})).await;
    assert_eq!(r.body["member"]["role"], "member");
    for (body, status, code) in [
        (json!({"userId": member_id}), 409, "already_member"),
        (json!({"userId": owner_id}), 409, "already_member"),
        (json!({"email": "ghost@example.com"}), 404, "user_not_found"),
        (json!({}), 400, "validation_failed"),
        (json!({"userId": other_id, "email": "other@example.com"}), 400, "validation_failed"),
        (json!({"userId": other_id, "role": "boss"}), 400, "validation_failed"),
        (json!({"userId": other_id, "role": "owner"}), 403, "permission_denied"),
    ] {
        let r = app.post(&members, &admin, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (status, Some(code)), "{body}: {}", r.body);
    }
    let r = app.post(&members, &member, json!({"userId": other_id})).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (403, Some("Permission denied")));

    let list = app.get(&members, &member).await;
    assert_eq!(list.status, 200);
    let roles: Vec<(&str, &str)> = list.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [("owner@example.com", "owner"), ("admin@example.com", "admin"), ("member@example.com", "member")]
    );

    let r =
        app.call(Method::PATCH, &format!("{members}/{member_id}"), Some(&admin), Some(json!({"role": "viewer"}))).await;
    assert_eq!(r.body["member"]["role"], "viewer");
    let r =
        app.call(Method::PATCH, &format!("{members}/{member_id}"), Some(&admin), Some(json!({"role": "viewer"}))).await;
    assert_eq!(r.status, 200, "same role again is a no-op");
    assert_eq!(app.create_task(&member, &pid, "viewer write").await.status, 403, "the new role applies at once");
    let r =
        app.call(Method::PATCH, &format!("{members}/{owner_id}"), Some(&admin), Some(json!({"role": "member"}))).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (403, Some("Only project owners can change owners")));
    let r =
        app.call(Method::PATCH, &format!("{members}/{owner_id}"), Some(&owner), Some(json!({"role": "admin"}))).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("last_owner")));
    let r = app.call(Method::DELETE, &format!("{members}/{owner_id}"), Some(&owner), None).await;
    assert_eq!(r.body["code"], "last_owner");
    let r =
        app.call(Method::PATCH, &format!("{members}/{other_id}"), Some(&owner), Some(json!({"role": "admin"}))).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("member_not_found")));
    let r = app.call(Method::PATCH, &format!("{members}/{member_id}"), Some(&owner), Some(json!({}))).await;
    assert_eq!(r.body["field"], "Role");

    let r = app.call(Method::DELETE, &format!("{members}/{member_id}"), Some(&admin), None).await;
    assert_eq!(r.body, json!({"success": true, "message": "Member removed successfully"}));
    let r = app.get(&format!("/api/projects/{pid}"), &member).await;
    assert_eq!(r.status, 404, "a removed member loses access at once");

    let acts = app.get(&format!("/api/projects/{pid}/activities"), &owner).await;
    let kinds: Vec<&str> =
        acts.body["activities"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["member.removed", "member.updated", "member.added", "member.added"]);
    assert_eq!(
        acts.body["activities"][1]["metadata"],
        json!({"field": "role", "oldValue": "member", "newValue": "viewer"})
    );
    assert_eq!(acts.body["activities"][0]["action"], "removed member \"member\"");
    let _ = admin_id;
}

#[tokio::test]
async fn legacy_email_members_are_listed_and_addressable() {
    let app = TestApp::with_fixtures().await;
    let marten = token_for("1756887342317", "marten.oberg@example.com");
    let p2 = "/api/projects/bbbbbbbb-0000-4000-8000-000000000002/members";
    let list = app.get(p2, &marten).await;
    assert_eq!(list.status, 200);
    let aoife = list.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == "aoife.obrien@example.com")
        .unwrap()
        .clone();
    assert_eq!(aoife["name"], "Aoife O&#x27;Brien");
    // Addressable by the user id the e-mail entry resolves to.
    let r = app
        .call(
            Method::PATCH,
            &format!("{p2}/aaaaaaaa-0000-4000-8000-000000000004"),
            Some(&marten),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["member"]["userId"], "aoife.obrien@example.com");
    let r = app.post(p2, &marten, json!({"userId": "aaaaaaaa-0000-4000-8000-000000000004"})).await;
    assert_eq!(r.body["code"], "already_member");

    // Both write tasks: the member by e-mail (whom the PostgreSQL store's one-statement insert does not vouch for,
    // so the regular access check admits), and the legacy-id creator.
    let aoife = token_for("aaaaaaaa-0000-4000-8000-000000000004", "aoife.obrien@example.com");
    let tasks = "/api/projects/bbbbbbbb-0000-4000-8000-000000000002/tasks";
    let by_aoife = app.post(tasks, &aoife, json!({"title": "Colour grade"})).await;
    assert_eq!(by_aoife.status, 200, "{}", by_aoife.body);
    assert_eq!(by_aoife.body["task"]["createdBy"], "aaaaaaaa-0000-4000-8000-000000000004");
    let by_marten = app.post(tasks, &marten, json!({"title": "Sound mix"})).await;
    assert_eq!(by_marten.status, 200, "{}", by_marten.body);
    assert_eq!(by_marten.body["task"]["createdBy"], "1756887342317");
    let list = app.get(tasks, &aoife).await;
    let titles: Vec<&str> =
        list.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles[titles.len() - 2..], ["Colour grade", "Sound mix"]);
}

#[tokio::test]
async fn milestones_create_update_and_roles() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.signup("m@example.com").await;
    let (viewer, viewer_id) = app.signup("v@example.com").await;
    let pid = app.create_project(&owner, "Milestones").await;
    app.post(&format!("/api/projects/{pid}/members"), &owner, json!({"userId": viewer_id, "role": "viewer"})).await;
    let base = format!("/api/projects/{pid}/milestones");
    let r = app.post(&base, &owner, json!({"title": "Beta", "dueDate": "2026-01-15", "status": "completed"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    insta::assert_json_snapshot!("milestone_created", r.body, {
        ".milestone.id" => "[id]", ".milestone.projectId" => "[project]", ".milestone.createdBy" => "[user]",
        ".milestone.createdAt" => "[ts]", ".milestone.updatedAt" => "[ts]"
    });
    let mid = r.body["milestone"]["id"].as_str().unwrap().to_owned();
    app.post(&base, &owner, json!({"title": "GA"})).await;
    let r = app.put(&format!("{base}/{mid}"), &owner, json!({"status": "in-progress"})).await;
    assert_eq!(r.body["milestone"]["status"], "in_progress");
    let r = app.put(&format!("{base}/{mid}"), &owner, json!({"status": "completed", "createdBy": "x"})).await;
    assert!(r.body["milestone"]["completedAt"].is_string());
    assert_ne!(r.body["milestone"]["createdBy"], "x");
    let r = app.put(&format!("{base}/{mid}"), &owner, json!({"status": "done"})).await;
    assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (400, Some("Milestone status")));
    let r = app.put(&format!("{base}/nope"), &owner, json!({})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("milestone_not_found")));
    let r = app.post(&base, &owner, json!({"title": ""})).await;
    assert_eq!(r.body["field"], "Milestone title");
    let r = app.post(&base, &viewer, json!({"title": "nope"})).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (403, Some("Viewers cannot modify milestones")));
    let project = app.get(&format!("/api/projects/{pid}"), &viewer).await;
    let titles: Vec<&str> = project.body["project"]["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Beta", "GA"]);
    let acts = app.get(&format!("/api/projects/{pid}/activities?type=milestone.completed"), &owner).await;
    assert_eq!(acts.body["total"], 1);
}
