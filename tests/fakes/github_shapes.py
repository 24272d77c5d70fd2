"""GitHub's JSON shapes (users, repositories, issues, comments, pull requests, event payloads), complete
enough to validate against GitHub's published OpenAPI and webhook descriptions.

Used by the fake REST server and by the tests that build event payloads; the schema tests check them.
"""

from __future__ import annotations

from typing import Any

API = "https://api.github.com"
WEB = "https://github.com"
TIME = "2026-12-01T10:00:00Z"

_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def _node(prefix: str, number: int) -> str:
    return f"{prefix}_kwDO{number:08d}"


def user(login: str, user_id: int = 1, kind: str = "User") -> dict[str, Any]:
    base = f"{API}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": _node("U", user_id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"{WEB}/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def repository(full_name: str, default_branch: str = "main", repo_id: int = 1000, full: bool = False) -> dict:
    """The `repository` shape (`full-repository` when `full`), as GET /repos/{owner}/{repo} answers."""
    owner, name = full_name.split("/", 1)
    api = f"{API}/repos/{full_name}"
    data: dict[str, Any] = {
        "id": repo_id,
        "node_id": _node("R", repo_id),
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user(owner, 100),
        "html_url": f"{WEB}/{full_name}",
        "description": "a repository patchfleet works on",
        "fork": False,
        "url": api,
        **{key: api + suffix for key, suffix in _REPO_URLS.items()},
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"{WEB}/{full_name}.git",
        "svn_url": f"{WEB}/{full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": "Python",
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 10,
        "default_branch": default_branch,
        "open_issues_count": 1,
        "open_issues": 1,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "public",
        "pushed_at": TIME,
        "created_at": TIME,
        "updated_at": TIME,
        "license": None,
        "allow_forking": True,
        "web_commit_signoff_required": False,
    }
    if full:
        data.update({"network_count": 0, "subscribers_count": 1})
    return data


def label(name: str, label_id: int = 7) -> dict[str, Any]:
    return {
        "id": label_id,
        "node_id": _node("LA", label_id),
        "url": f"{API}/labels/{name}",
        "name": name,
        "description": None,
        "color": "ededed",
        "default": False,
    }


def reactions(url: str) -> dict[str, Any]:
    counts = ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")
    return {"url": f"{url}/reactions", "total_count": 0, **dict.fromkeys(counts, 0)}


def issue(
    full_name: str,
    number: int,
    title: str,
    body: str,
    author: dict[str, Any],
    *,
    state: str = "open",
    locked: bool = False,
    labels: list[str] = (),  # type: ignore[assignment]
    comments: int = 0,
    association: str = "OWNER",
) -> dict[str, Any]:
    api = f"{API}/repos/{full_name}/issues/{number}"
    data = {
        "id": 5000 + number,
        "node_id": _node("I", 5000 + number),
        "url": api,
        "repository_url": f"{API}/repos/{full_name}",
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": f"{WEB}/{full_name}/issues/{number}",
        "timeline_url": f"{api}/timeline",
        "number": number,
        "state": state,
        "title": title,
        "body": body,
        "user": author,
        "labels": [label(name, 7 + i) for i, name in enumerate(labels)],
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "locked": locked,
        "active_lock_reason": "resolved" if locked else None,
        "comments": comments,
        "closed_at": TIME if state == "closed" else None,
        "created_at": TIME,
        "updated_at": TIME,
        "author_association": association,
        "reactions": reactions(api),
    }
    if state == "closed":  # null is what GitHub sends for open issues, but the published enum omits it
        data["state_reason"] = "completed"
    return data


def comment(
    full_name: str, number: int, comment_id: int, body: str, author: dict[str, Any], association: str
) -> dict[str, Any]:
    api = f"{API}/repos/{full_name}/issues/comments/{comment_id}"
    return {
        "id": comment_id,
        "node_id": _node("IC", comment_id),
        "url": api,
        "html_url": f"{WEB}/{full_name}/issues/{number}#issuecomment-{comment_id}",
        "issue_url": f"{API}/repos/{full_name}/issues/{number}",
        "body": body,
        "user": author,
        "created_at": TIME,
        "updated_at": TIME,
        "author_association": association,
        "performed_via_github_app": None,
        "reactions": reactions(api),
    }


def _ref(full_name: str, ref: str, sha: str) -> dict[str, Any]:
    owner = full_name.split("/", 1)[0]
    return {
        "label": f"{owner}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user(owner, 100),
        "repo": repository(full_name),
    }


def pull_request(
    full_name: str,
    number: int,
    title: str,
    body: str,
    head: str,
    head_sha: str,
    base: str,
    base_sha: str,
    author: dict[str, Any],
    *,
    draft: bool = True,
    state: str = "open",
    full: bool = True,
) -> dict[str, Any]:
    """`pull-request` (or `pull-request-simple` for lists, when not `full`)."""
    api = f"{API}/repos/{full_name}/pulls/{number}"
    html = f"{WEB}/{full_name}/pull/{number}"
    issue_api = f"{API}/repos/{full_name}/issues/{number}"
    links = {
        "self": api,
        "html": html,
        "issue": issue_api,
        "comments": f"{issue_api}/comments",
        "review_comments": f"{api}/comments",
        "review_comment": f"{API}/repos/{full_name}/pulls/comments{{/number}}",
        "commits": f"{api}/commits",
        "statuses": f"{API}/repos/{full_name}/statuses/{head_sha}",
    }
    data: dict[str, Any] = {
        "url": api,
        "id": 9000 + number,
        "node_id": _node("PR", 9000 + number),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_api,
        "commits_url": links["commits"],
        "review_comments_url": links["review_comments"],
        "review_comment_url": links["review_comment"],
        "comments_url": links["comments"],
        "statuses_url": links["statuses"],
        "number": number,
        "state": state,
        "locked": False,
        "title": title,
        "user": author,
        "body": body,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": TIME,
        "updated_at": TIME,
        "closed_at": None,
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _ref(full_name, head, head_sha),
        "base": _ref(full_name, base, base_sha),
        "_links": {key: {"href": href} for key, href in links.items()},
        "author_association": "CONTRIBUTOR",
        "auto_merge": None,
        "draft": draft,
    }
    if full:
        data.update(
            {
                "merged": False,
                "mergeable": None,
                "rebaseable": None,
                "mergeable_state": "unknown",
                "merged_by": None,
                "comments": 0,
                "review_comments": 0,
                "maintainer_can_modify": False,
                "commits": 1,
                "additions": 1,
                "deletions": 1,
                "changed_files": 1,
            }
        )
    return data


# --- event payloads (what GitHub Actions writes to GITHUB_EVENT_PATH) -----------------------------


def issues_labeled_event(issue_data: dict[str, Any], label_name: str, sender: dict[str, Any]) -> dict:
    full_name = issue_data["repository_url"].split("/repos/", 1)[1]
    return {
        "action": "labeled",
        "issue": issue_data,
        "label": label(label_name),
        "repository": repository(full_name),
        "sender": sender,
    }


def issue_comment_event(
    issue_data: dict[str, Any], body: str, author: dict[str, Any], association: str, comment_id: int = 777
) -> dict:
    full_name = issue_data["repository_url"].split("/repos/", 1)[1]
    return {
        "action": "created",
        "issue": issue_data,
        "comment": comment(full_name, issue_data["number"], comment_id, body, author, association),
        "repository": repository(full_name),
        "sender": author,
    }
