"""Teams' use cases. The package splits by topic; import from here.

- `management`: team CRUD and history (and the helpers `members` shares);
- `members`: members, work types and leadership;
- `capacity`: the signing rule (`team_can_sign`, `assert_team_can_sign`), team caps and the
  atomic place counters for contracts (`reserve_capacity`, `release_capacity`);
- `public`: team cards of the public doctor library.
"""

from __future__ import annotations

from app.teams.services.capacity import (
    TeamReadiness,
    assert_team_can_sign,
    release_capacity,
    reserve_capacity,
    signing_member,
    team_can_sign,
    team_capacity,
    team_remaining,
)
from app.teams.services.management import (
    create_team,
    dissolve_team,
    get_team,
    list_teams,
    set_team_capacity,
    team_history,
    update_team,
)
from app.teams.services.members import add_member, change_member, get_member, remove_member
from app.teams.services.public import public_team, search_public_teams

__all__ = [
    "TeamReadiness",
    "add_member",
    "assert_team_can_sign",
    "change_member",
    "create_team",
    "dissolve_team",
    "get_member",
    "get_team",
    "list_teams",
    "public_team",
    "release_capacity",
    "remove_member",
    "reserve_capacity",
    "search_public_teams",
    "set_team_capacity",
    "signing_member",
    "team_can_sign",
    "team_capacity",
    "team_history",
    "team_remaining",
    "update_team",
]
