"""Pages of a list: `page` and `per_page` in, the rows plus total, pages and links out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from checkin.api.schemas import PageLinks, PageQuery


@dataclass(frozen=True)
class Page:
    rows: Sequence[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def meta(self) -> dict[str, Any]:
        """The paging fields of a list body: page, per_page, total, pages, links."""
        return {
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": self.pages,
            "links": PageLinks(
                first=_link(1),
                last=_link(self.pages),
                next=_link(self.page + 1) if self.page < self.pages else None,
                prev=_link(min(self.page - 1, self.pages)) if self.page > 1 else None,
            ),
        }


def fetch(db: Session, stmt: Select[Any], query: PageQuery) -> Page:
    """One page of `stmt`'s rows (it must be ordered) and how many there are in all. A page
    past the last one is empty, with links back."""
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    offset = (query.page - 1) * query.per_page
    rows = list(db.scalars(stmt.offset(offset).limit(query.per_page)))
    return Page(rows, query.page, query.per_page, total)


def _link(page: int) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    return f"{request.path}?{urlencode([*args, ('page', str(page))])}"
