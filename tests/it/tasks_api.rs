use serde_json::json;

use crate::support::TestApp;

async fn add_member(app: &TestApp, owner: &str, project: &str, user_id: &str, role: &str) {
    let r =
        app.post(&format!("/api/projects/{project}/members"), owner, json!({"userId": user_id, "role": role})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn task_lifecycle_with_activities_and_progress() {
    let app = TestApp::spawn().await;
    let (token, user_id) = app.signup("t@example.com").await;
    let pid = app.create_project(&token, "Tasks").await;
    let created = app
        .post(&format!("/api/projects/{pid}/tasks"), &token, json!({"title": " Draft ", "priority": "critical", "dueDate": "2025-11-30", "assignedTo": user_id, "id": "forged", "createdBy": "forged"}))
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    insta::assert_json_snapshot!("task_created", created.body, {
        ".task.id" => "[id]", ".task.projectId" => "[project]", ".task.assignedTo" => "[user]", ".task.createdBy" => "[user]",
        ".task.createdAt" => "[ts]", ".task.updatedAt" => "[ts]"
    });
    let tid = created.body["task"]["id"].as_str().unwrap().to_owned();
    assert_ne!(tid, "forged");

    let second = app.create_task(&token, &pid, "Second").await;
    let list = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let titles: Vec<&str> =
        list.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Draft", "Second"], "appended in position order");

    let upd = app.put(&format!("/api/projects/{pid}/tasks/{tid}"), &token, json!({"status": "in-progress"})).await;
    assert_eq!(upd.body["task"]["status"], "in_progress");
    let done = app.put(&format!("/api/projects/{pid}/tasks/{tid}"), &token, json!({"status": "completed"})).await;
    assert!(done.body["task"]["completedAt"].is_string());
    let project = app.get(&format!("/api/projects/{pid}"), &token).await;
    assert_eq!(project.body["project"]["progress"], 50);
    let reopened = app.put(&format!("/api/projects/{pid}/tasks/{tid}"), &token, json!({"status": "review"})).await;
    assert_eq!(reopened.body["task"]["completedAt"], json!(null));
    let empty = app.put(&format!("/api/projects/{pid}/tasks/{tid}"), &token, json!({})).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["task"]["title"], "Draft");

    let one = app.get(&format!("/api/projects/{pid}/tasks/{tid}"), &token).await;
    assert_eq!(one.body["task"]["status"], "review");

    let sid = second.body["task"]["id"].as_str().unwrap();
    let del = app.delete(&format!("/api/projects/{pid}/tasks/{sid}"), &token).await;
    assert_eq!(del.body, json!({"success": true, "message": "Task deleted successfully"}));
    let gone = app.get(&format!("/api/projects/{pid}/tasks/{sid}"), &token).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["code"], "task_not_found");

    let acts = app.get(&format!("/api/projects/{pid}/activities"), &token).await;
    let types: Vec<&str> =
        acts.body["activities"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "task.deleted",
            "task.updated",
            "task.updated",
            "task.completed",
            "task.updated",
            "task.created",
            "task.created"
        ]
    );
    assert_eq!(acts.body["total"], 7);
    assert_eq!(acts.body["hasMore"], false);
    let first_update = &acts.body["activities"][4];
    assert_eq!(first_update["metadata"], json!({"field": "status", "oldValue": "todo", "newValue": "in_progress"}));
    assert_eq!(first_update["action"], "updated task \"Draft\"");
    let page = app.get(&format!("/api/projects/{pid}/activities?limit=2&offset=1&type=task.updated"), &token).await;
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["activities"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["hasMore"], false);
    let bad = app.get(&format!("/api/projects/{pid}/activities?limit=0"), &token).await;
    assert_eq!((bad.status.as_u16(), bad.body["field"].as_str()), (400, Some("Limit")));
}

#[tokio::test]
async fn task_validation_and_roles() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.signup("owner@example.com").await;
    let (viewer, viewer_id) = app.signup("viewer@example.com").await;
    let (member, member_id) = app.signup("member@example.com").await;
    let pid = app.create_project(&owner, "Roles").await;
    add_member(&app, &owner, &pid, &viewer_id, "viewer").await;
    add_member(&app, &owner, &pid, &member_id, "member").await;

    for (body, field) in [
        (json!({}), "Task title"),
        (json!({"title": ""}), "Task title"),
        (json!({"title": ["x"]}), "Task title"),
        (json!({"title": "t".repeat(501)}), "Task title"),
        (json!({"title": "ok", "status": "doing"}), "Task status"),
        (json!({"title": "ok", "priority": "urgent"}), "Task priority"),
        (json!({"title": "ok", "assignedTo": "no-such-user"}), "Assigned user"),
        (json!({"title": "ok", "assignedTo": 7}), "Assigned user"),
        (json!({"title": "ok", "dueDate": "31/12/2025"}), "Due date"),
        (json!({"title": "ok", "description": "d".repeat(5001)}), "Description"),
    ] {
        let r = app.post(&format!("/api/projects/{pid}/tasks"), &owner, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
        assert_eq!(r.body["success"], false);
    }

    let denied = app.create_task(&viewer, &pid, "nope").await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        json!({"success": false, "error": "Viewers cannot modify tasks", "code": "permission_denied"})
    );
    assert_eq!(app.get(&format!("/api/projects/{pid}/tasks"), &viewer).await.status, 200);

    let by_member = app.create_task(&member, &pid, "by a contributor").await;
    assert_eq!(by_member.status, 200);
    let tid = by_member.body["task"]["id"].as_str().unwrap();
    let del = app.delete(&format!("/api/projects/{pid}/tasks/{tid}"), &member).await;
    assert_eq!(del.status, 403);
    assert_eq!(del.body["error"], "Only project owners and admins can delete tasks");
    let reassigned =
        app.put(&format!("/api/projects/{pid}/tasks/{tid}"), &owner, json!({"assignedTo": member_id})).await;
    assert_eq!(reassigned.status, 200);
    let acts = app.get(&format!("/api/projects/{pid}/activities?limit=1"), &owner).await;
    assert_eq!(
        acts.body["activities"][0]["metadata"],
        json!({"field": "assignedTo", "oldValue": "Unassigned", "newValue": "member"})
    );
    let del_project = app.delete(&format!("/api/projects/{pid}"), &member).await;
    assert_eq!(del_project.status, 403);
    assert_eq!(del_project.body["error"], "Only project owners can delete projects");
}

/// Whoever asks, a task insert answers what the access rules say, in their order (404, then 403, then 400) — also
/// where a store checks write access inside the insert statement and falls back to the regular path.
#[tokio::test]
async fn task_insert_answers_each_caller_by_role() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.signup("owner@example.com").await;
    let (admin, admin_id) = app.signup("admin@example.com").await;
    let (viewer, viewer_id) = app.signup("viewer@example.com").await;
    let (stranger, _) = app.signup("stranger@example.com").await;
    let pid = app.create_project(&owner, "Access").await;
    add_member(&app, &owner, &pid, &admin_id, "admin").await;
    add_member(&app, &owner, &pid, &viewer_id, "viewer").await;
    let tasks = format!("/api/projects/{pid}/tasks");

    for body in [json!({"title": "valid"}), json!({"title": ""}), json!({"title": "x", "assignedTo": admin_id})] {
        let r = app.post(&tasks, &stranger, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("project_not_found")), "{body}");
        let r = app.post(&tasks, &viewer, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (403, Some("permission_denied")), "{body}");
    }
    for path in ["/api/projects/cccccccc-0000-4000-8000-00000000dead/tasks", "/api/projects/not-an-id/tasks"] {
        let r = app.post(path, &owner, json!({"title": "valid"})).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("project_not_found")), "{path}");
    }
    let r = app.post(&tasks, &admin, json!({"title": ""})).await;
    assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (400, Some("Task title")));

    let by_admin = app.post(&tasks, &admin, json!({"title": "by the admin", "status": "review"})).await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
    assert_eq!(by_admin.body["task"]["createdBy"], admin_id);
    let by_owner = app.post(&tasks, &owner, json!({"title": "by the owner", "assignedTo": admin_id})).await;
    assert_eq!(by_owner.status, 200, "{}", by_owner.body);
    let list = app.get(&tasks, &viewer).await;
    let titles: Vec<&str> =
        list.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["by the admin", "by the owner"], "nothing else was inserted");
    let acts = app.get(&format!("/api/projects/{pid}/activities?type=task.created"), &owner).await;
    assert_eq!(acts.body["total"], 2, "one activity per inserted task");
    assert_eq!(app.get(&format!("/api/projects/{pid}"), &owner).await.body["project"]["progress"], 0);
}

#[tokio::test]
async fn deleting_a_project_removes_its_activity_file_json_only() {
    let mut app = TestApp::spawn().await;
    let (token, _) = app.signup("d@example.com").await;
    let pid = app.create_project(&token, "Doomed").await;
    app.create_task(&token, &pid, "t").await;
    let file = app.data_dir().join("data/activities").join(format!("{pid}.json"));
    app.stop().await;
    assert!(file.exists());
    let app = app.restart().await;
    let (token, _) = {
        let r = app.login("d@example.com", "password-123").await;
        (r.body["token"].as_str().unwrap().to_owned(), ())
    };
    assert_eq!(app.delete(&format!("/api/projects/{pid}"), &token).await.status, 200);
    let mut app = app;
    app.stop().await;
    assert!(!file.exists(), "activity file of a deleted project is removed");
}

/// The task list is written by hand (`api::rawjson`) and, on PostgreSQL, its timestamps are decoded from their
/// binary form (`mapping::FastTs`): both must give back exactly what the write answered, at the edges too (before
/// 1970 and 2000, the first and last representable years, millisecond fractions), and with text that needs escapes.
#[tokio::test]
async fn the_task_list_gives_back_edge_dates_and_escaped_text_exactly() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("edges@example.com").await;
    let pid = app.create_project(&token, "Edges").await;
    let dates = [
        "0001-01-01",
        "1600-02-29",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999Z",
        "2000-01-01T00:00:00.001Z",
        "2024-02-29T12:30:00.5+05:30",
        "9999-12-31T23:59:59.999Z",
    ];
    let mut written = Vec::new();
    for (i, due) in dates.iter().enumerate() {
        let title = format!("t{i} \"quoted\" back\\slash\ttab\u{1} é 𝄞");
        let r = app
            .post(
                &format!("/api/projects/{pid}/tasks"),
                &token,
                json!({"title": title, "description": "line one\nline two", "dueDate": due}),
            )
            .await;
        assert_eq!(r.status, 200, "{due}: {}", r.body);
        written.push(r.body["task"].clone());
    }
    let list = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["tasks"].as_array().unwrap(), &written);
    assert_eq!(written[0]["dueDate"], "0001-01-01T00:00:00.000Z");
    assert_eq!(written[6]["dueDate"], "2024-02-29T07:00:00.500Z");
    assert_eq!(written[7]["dueDate"], "9999-12-31T23:59:59.999Z");
}
