"""The secretary web app: server-rendered pages (Jinja2 + htmx), zh-CN, under ``/web``.

It is a FastAPI sub-application mounted by :func:`server.app.create_app` (via
:func:`server.web.app.mount_web_app`). It shares the API app's state (engine, settings, clock,
keyring, live feed) and calls the same services as the JSON API: a page handler parses the form,
calls a service, renders the result. Rules live in the services, never in handlers or templates.

How to add a page
=================

1. Write ``server/web/pages/<section>.py`` with ``router = APIRouter()`` and handlers like::

       @router.get("/transfers/{transfer_id}")
       def transfer_detail(transfer_id: int, request: Request, ctx: PageDep) -> HTMLResponse:
           detail = get_detail(ctx.session, request_id=transfer_id, caller=ctx.caller, ...)
           return render(request, "transfers/detail.html", {"nav": "transfers", "t": detail})

   - ``PageDep`` (``server.web.deps``) is the request's :class:`~server.deps.RequestContext`
     (``session``, ``caller``, ``now``, ``settings``), the same one API routes get, with the
     signed-in user's :class:`~server.caller.Caller`. It redirects to the sign-in page without a
     session and checks the CSRF token on every POST. ``CurrentUser`` gives the
     :class:`~server.users.service.WebUser` itself, for the few pages that need more than the
     caller (signing out).
   - Scope and audit are the services': pass ``ctx.caller`` and an object outside the user's
     subtree is a 404 (also when the URL is typed by hand), and the change is audited in the
     caller's name (look objects up with the ``require_visible_*`` services, never unscoped).
   - Roles: :func:`server.web.deps.ensure_role` (``UserRole.SECRETARY/ORGANISER/ADMIN``).
     A ``REPRESENTATIVE`` (党代表) has an empty scope: every scoped page shows them nothing, and
     their only section is the 留言亭 inbox (``pages/booth.py``). The members' own phone pages
     (``pages/booth_member.py``, ``/web/m/``) have no account: a one-time link from a tap.
   - Time: ``ctx.now`` (read once per request), never ``datetime.now()``.
   - Raise DomainErrors freely: ``server.web.errors`` shows them as a toast for htmx requests
     and as an error page otherwise.
2. Add the router to :func:`server.web.app.page_routers` (one line).
3. Templates go in ``server/web/templates/<section>/``; extend ``base.html`` and fill
   ``{% block content %}``; pass ``"nav": "<key>"`` to highlight the section (keys in
   ``templating.NAVIGATION``). Use the classes in ``static/app.css``: ``page-head``, ``card``,
   ``card flush`` + ``table.data``, ``badge green|red|amber|blue``, ``btn btn-primary``,
   ``form-grid`` + ``field``, ``grid grid-3`` + ``stat``.
4. Forms: ``<form method="post" action="…" hx-post="…">`` with
   ``<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`` (htmx also sends the token
   as ``X-CSRF-Token`` from ``<body hx-headers>``). On success return
   ``redirect(request, url, toast="已保存")`` (``server.web.templating``): htmx gets
   ``HX-Redirect``, a plain post a 303, and the toast shows on the next page.
   Every POST form gets a hidden ``form_token`` (``static/forms.js``), its buttons are disabled
   while it is sent, and a repeat of the token changes nothing (``server.web.form_tokens``):
   nothing to add per form, but do answer a success with ``redirect()`` so a repeat is sent to
   the same page. An irreversible action asks first, naming what will happen to whom:
   ``data-confirm="接收后，张三将转入本支部，此操作不能撤销。确定接收吗？"`` on the form or on
   the submit button (``hx-confirm`` works on an htmx form only, never on one of its buttons).
5. Browser tests: ``tests/web/`` has fixtures ``live_server``, ``browser_page`` and
   ``login(page, user)``; save a screenshot with ``screenshot(page, "name")``.

JavaScript: htmx 2 and its SSE extension are vendored in ``static/vendor`` (see the README
there); ``static/forms.js`` does the confirmations, disabling, form tokens and the loading bar,
``static/board.js`` the live board's connection state and full screen; ``static/app.js`` opens
the phone menu and shows toasts (an error toast stays until
closed and marks the fields the server named: ``toast_header(..., fields=...)``). The
Content-Security-Policy allows no inline script or style (not even ``style=""``), so put
behaviour in attributes (htmx) and looks in ``app.css``. Dates go through the filters
``date``, ``datetime`` (prose), ``short_date``, ``short_datetime`` (tables), ``time``, ``month``
and ``span(start, end)``, never ``strftime`` or ``isoformat``. Every page must fit a 360 px
screen: wrap tables in ``<div class="table-wrap">``.
"""
