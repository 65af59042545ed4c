import copy

import orjson
import pytest
from sqlalchemy import func, select, text

from app.core.config import DEFAULT_ACCOUNT
from app.core.errors import InputFileError
from app.load import ingest as ingest_module
from app.load.ingest import ingest
from app.load.json_files import read_json_objects
from app.load.rejects import RejectSink
from app.load.runner import ingest_file
from app.models import Charge, Customer, InvoiceLine, SubscriptionItem
from app.registry import BY_NAME, load_order
from app.synthetic import (
    charge,
    customer,
    deleted_customer,
    invoice,
    payment_intent,
    price,
    product,
    sample_export,
    subscription,
)

CUSTOMERS, CHARGES = BY_NAME["customers"], BY_NAME["charges"]


def count(conn, model) -> int:
    return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_customer_insertion(conn, session):
    result = ingest(conn, CUSTOMERS, [customer(1), customer(2)])
    assert result.stats["customers"].inserted == 2
    stored = session.get(Customer, (DEFAULT_ACCOUNT, "cus_00000000000001"))
    assert stored.email == "customer1@example.com"
    assert stored.created.tzinfo is not None
    assert stored.raw == customer(1)
    assert stored.metadata_ == {"segment": "smb", "source": "sample"}
    assert stored.is_placeholder is False


def test_duplicate_customer_is_skipped(conn):
    ingest(conn, CUSTOMERS, [customer(1)], mode="skip")
    changed = customer(1)
    changed["email"] = "changed@example.com"
    result = ingest(conn, CUSTOMERS, [customer(1), changed], mode="skip")
    stats = result.stats["customers"]
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, 2)
    email = conn.execute(select(Customer.email)).scalar_one()
    assert email == "customer1@example.com"
    assert count(conn, Customer) == 1


def test_charge_insertion(conn):
    ingest(conn, CUSTOMERS, [customer(1)])
    result = ingest(conn, CHARGES, [charge(5, 1, 1999)])
    assert result.stats["charges"].inserted == 1
    row = conn.execute(select(Charge.amount, Charge.customer_id, Charge.currency)).one()
    assert tuple(row) == (1999, "cus_00000000000001", "eur")


def test_duplicate_charge_is_skipped(conn):
    ingest(conn, CHARGES, [charge(5, 1, 1999)], mode="skip")
    result = ingest(conn, CHARGES, [charge(5, 1, 1999)], mode="skip")
    assert result.stats["charges"].unchanged == 1
    assert result.stats["charges"].inserted == 0
    assert count(conn, Charge) == 1


def test_ensure_deleted_customer_placeholder_created(conn, session):
    # the customer was deleted in Stripe: the charge still points at it, the list no longer has it
    result = ingest(conn, CHARGES, [charge(9, 404, 4200)])
    assert result.stats["charges"].inserted == 1
    assert result.stats["charges"].placeholders == 1
    ghost = session.get(Customer, (DEFAULT_ACCOUNT, "cus_00000000000404"))
    assert ghost.is_placeholder is True
    assert ghost.referenced_by == "ch_00000000000009"
    assert ghost.email is None and ghost.raw is None


def test_real_object_replaces_its_placeholder(conn, session):
    ingest(conn, CHARGES, [charge(9, 404, 4200)])
    result = ingest(conn, CUSTOMERS, [customer(404)], mode="skip")  # even in skip mode
    assert result.stats["customers"].updated == 1
    real = session.get(Customer, (DEFAULT_ACCOUNT, "cus_00000000000404"))
    assert real.is_placeholder is False
    assert real.referenced_by is None
    assert real.email == "customer404@example.com"


def test_changed_object_updates_its_row(conn):
    ingest(conn, CUSTOMERS, [customer(1), customer(2)])
    changed = customer(1)
    changed["email"] = "new@example.com"
    result = ingest(conn, CUSTOMERS, [changed, customer(2)])
    stats = result.stats["customers"]
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 1, 1)
    email = conn.execute(select(Customer.email).where(Customer.id == changed["id"])).scalar_one()
    assert email == "new@example.com"


def test_later_duplicate_in_one_batch_wins_in_upsert_mode(conn):
    changed = customer(1)
    changed["name"] = "Renamed"
    result = ingest(conn, CUSTOMERS, [customer(1), changed])
    assert result.stats["customers"].inserted == 1
    assert conn.execute(select(Customer.name)).scalar_one() == "Renamed"


def test_unchanged_rows_are_not_rewritten(conn):
    ingest(conn, CUSTOMERS, [customer(1)])
    # each batch is its own (sub)transaction: a rewritten row would carry a new xmin
    xmin_before = conn.execute(text("SELECT xmin::text FROM customers")).scalar_one()
    ingest(conn, CUSTOMERS, [customer(1)])
    assert conn.execute(text("SELECT xmin::text FROM customers")).scalar_one() == xmin_before
    changed = customer(1)
    changed["name"] = "Renamed"
    ingest(conn, CUSTOMERS, [changed])
    assert conn.execute(text("SELECT xmin::text FROM customers")).scalar_one() != xmin_before


def write_sample(directory):
    for name, objects in sample_export().items():
        envelope = {"object": "list", "data": objects, "has_more": False, "url": "/v1/x"}
        (directory / f"{name}.json").write_bytes(orjson.dumps(envelope))


def snapshot(conn):
    tables = [r.name for r in load_order()] + ["subscription_items", "invoice_lines"]
    return {
        t: conn.execute(text(f"SELECT id, raw, is_placeholder, deleted FROM {t} ORDER BY id")).all()
        for t in tables
    }


def test_rerun_of_the_sample_changes_nothing(conn, tmp_path):
    write_sample(tmp_path)
    first = [ingest_file(conn, r, tmp_path / r.file_name) for r in load_order()]
    before = snapshot(conn)
    second = [ingest_file(conn, r, tmp_path / r.file_name) for r in load_order()]
    assert snapshot(conn) == before
    assert sum(s.inserted for r in first for s in r.stats.values()) > 90
    for result in second:
        for table, stats in result.stats.items():
            assert stats.inserted == stats.updated == stats.placeholders == 0, table
            assert stats.unchanged == stats.read, table
    assert count(conn, SubscriptionItem) == 12
    assert count(conn, InvoiceLine) == 12


def test_sample_links_resolve_through_real_foreign_keys(conn, tmp_path):
    write_sample(tmp_path)
    for resource in load_order():
        ingest_file(conn, resource, tmp_path / resource.file_name)
    ghosts = conn.execute(text("SELECT id FROM customers WHERE is_placeholder")).scalars().all()
    assert ghosts == ["cus_00000000000013"]
    linked = conn.execute(
        text(
            "SELECT count(*) FROM charges c JOIN payment_intents p ON p.id = c.payment_intent_id "
            "JOIN invoices i ON i.payment_intent_id = p.id JOIN subscriptions s ON s.id = i.subscription_id"
        )
    ).scalar_one()
    assert linked == 12


def test_subscription_items_follow_their_subscription(conn):
    ingest(conn, BY_NAME["products"], [product(1), product(2)])
    ingest(conn, BY_NAME["prices"], [price(1), price(2)])
    ingest(conn, CUSTOMERS, [customer(1)])
    ingest(conn, BY_NAME["subscriptions"], [subscription(1, 1, 1)])
    changed = subscription(1, 1, 1)
    item = copy.deepcopy(changed["items"]["data"][0])
    item.update(id="si_new", price=price(2))
    changed["items"]["data"] = [item]
    result = ingest(conn, BY_NAME["subscriptions"], [changed])
    assert result.stats["subscriptions"].updated == 1
    items = conn.execute(select(SubscriptionItem.id, SubscriptionItem.price_id)).all()
    assert [tuple(i) for i in items] == [("si_new", "price_00000000000002")]


def test_bad_records_are_set_aside_and_good_ones_land(conn, tmp_path):
    bad_amount = charge(2, 1, 100)
    bad_amount["amount"] = "ten euros"
    objects = [charge(1, 1, 100), bad_amount, {"object": "charge"}, charge(3, 1, 300)]
    with RejectSink(tmp_path) as rejects:
        result = ingest(conn, CHARGES, objects, rejects=rejects, source_name="charges.json")
    stats = result.stats["charges"]
    assert (stats.read, stats.inserted, stats.rejected) == (4, 2, 2)
    lines = [
        orjson.loads(line)
        for line in (tmp_path / "charges.rejects.jsonl").read_bytes().splitlines()
    ]
    assert [(r["id"], r["index"], r["file"]) for r in lines] == [
        ("ch_00000000000002", 1, "charges.json"),
        (None, 2, "charges.json"),
    ]
    assert "integer amount" in lines[0]["reason"]
    assert lines[0]["object"] == bad_amount


def test_row_the_database_refuses_is_isolated(conn, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "CELLS_PER_BATCH", 10)  # several rows per batch anyway
    # a rule only the database knows (rolled back with the test's transaction)
    conn.exec_driver_sql(
        "ALTER TABLE customers ADD CONSTRAINT no_refused CHECK (email <> 'refused@example.com')"
    )
    refused = customer(3)
    refused["email"] = "refused@example.com"
    objects = [customer(1), customer(2), refused, customer(4), customer(5)]
    with RejectSink(tmp_path) as rejects:
        result = ingest(conn, CUSTOMERS, objects, rejects=rejects)
    assert result.stats["customers"].inserted == 4
    assert result.stats["customers"].rejected == 1
    record = orjson.loads((tmp_path / "customers.rejects.jsonl").read_bytes())
    assert "the database refused it" in record["reason"] and record["id"] == refused["id"]


def test_an_id_longer_than_the_column_is_set_aside_before_the_database(conn, tmp_path):
    too_long = customer(3)
    too_long["id"] = "cus_" + "x" * 300  # the id column holds 255 characters
    with RejectSink(tmp_path) as rejects:
        result = ingest(conn, CUSTOMERS, [customer(1), too_long], rejects=rejects)
    assert (result.stats["customers"].inserted, result.stats["customers"].rejected) == (1, 1)
    assert "an id of 304 characters" in (tmp_path / "customers.rejects.jsonl").read_text()


def test_many_batches_load_every_row(conn, monkeypatch):
    monkeypatch.setattr(ingest_module, "CELLS_PER_BATCH", 100)  # 100-row batches
    result = ingest(conn, CUSTOMERS, (customer(n) for n in range(1, 1001)))
    assert result.stats["customers"].inserted == 1000
    assert count(conn, Customer) == 1000


def test_deleted_object_soft_deletes_its_row(conn):
    ingest(conn, CUSTOMERS, [customer(1)])
    result = ingest(conn, CUSTOMERS, [deleted_customer(1), deleted_customer(2)])
    assert result.stats["customers"].deleted == 2
    rows = conn.execute(
        select(Customer.id, Customer.deleted, Customer.email).order_by(Customer.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("cus_00000000000001", True, "customer1@example.com"),
        ("cus_00000000000002", True, None),
    ]
    again = ingest(conn, CUSTOMERS, [deleted_customer(1)])
    assert again.stats["customers"].deleted == 0
    assert again.stats["customers"].unchanged == 1


def test_a_soft_delete_keeps_the_last_known_object_and_a_never_seen_one_keeps_the_stub(conn):
    """Nothing is dropped: Stripe's deleted stub ({id, object, deleted}) flags the row, and the
    row keeps the object as it was last seen; an object first seen deleted keeps the stub."""
    ingest(conn, CUSTOMERS, [customer(1)])
    ingest(conn, CUSTOMERS, [deleted_customer(1), deleted_customer(2)])
    raws = dict(conn.execute(select(Customer.id, Customer.raw)).all())
    assert raws["cus_00000000000001"] == customer(1)
    assert raws["cus_00000000000002"] == deleted_customer(2)


def test_legacy_shapes_fill_the_same_columns(conn):
    ingest(conn, CUSTOMERS, [customer(1)])
    ingest(conn, BY_NAME["invoices"], [invoice(1, 1, 7, 1, 1000, legacy=True)])
    ingest(conn, BY_NAME["payment_intents"], [payment_intent(1, 1, 1000, invoice_n=1)])
    ingest(conn, CHARGES, [charge(1, 1, 1000, payment_intent_n=1, invoice_n=1)])
    row = conn.execute(
        text(
            "SELECT i.subscription_id, s.is_placeholder, c.invoice_id, p.invoice_id "
            "FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id, charges c, payment_intents p"
        )
    ).one()
    assert tuple(row) == ("sub_00000000000007", True, "in_00000000000001", "in_00000000000001")


def one_per_line(objects, opening=b"[", closing=b"]"):
    return opening + b"\n" + b",\n".join(orjson.dumps(o) for o in objects) + b"\n" + closing + b"\n"


LAYOUTS = [
    "envelope",
    "envelope-one-line",
    "array",
    "jsonl",
    "envelope-per-line",
    "array-per-line",
    "per-line-then-pretty",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_input_layout_is_read(tmp_path, layout):
    objects = [customer(1), customer(2), customer(3)]
    path = tmp_path / "customers.json"
    if layout == "envelope-per-line":
        path.write_bytes(
            one_per_line(objects, b'{"object": "list", "data": [', b'], "has_more": false}')
        )
    elif layout == "array-per-line":
        path.write_bytes(one_per_line(objects))
    elif layout == "per-line-then-pretty":
        pretty = orjson.dumps(objects[2], option=orjson.OPT_INDENT_2)
        path.write_bytes(one_per_line(objects[:2])[:-3] + b",\n" + pretty + b"\n]\n")
    elif layout == "envelope":
        path.write_bytes(
            orjson.dumps({"object": "list", "data": objects}, option=orjson.OPT_INDENT_2)
        )
    elif layout == "envelope-one-line":
        path.write_bytes(orjson.dumps({"object": "list", "data": objects}))
    elif layout == "array":
        path.write_bytes(orjson.dumps(objects, option=orjson.OPT_INDENT_2))
    else:
        path.write_bytes(b"\n".join(orjson.dumps(o) for o in objects) + b"\n")
    assert [o["id"] for o in read_json_objects(path)] == [o["id"] for o in objects]


def test_bad_json_line_is_set_aside(conn, tmp_path):
    path = tmp_path / "customers.json"
    path.write_bytes(
        orjson.dumps(customer(1)) + b"\n{not json\n" + orjson.dumps(customer(2)) + b"\n"
    )
    with RejectSink(tmp_path) as rejects:
        result = ingest_file(conn, CUSTOMERS, path, rejects=rejects)
    assert (result.stats["customers"].inserted, result.stats["customers"].rejected) == (2, 1)
    assert "line 2 is not valid JSON" in (tmp_path / "customers.rejects.jsonl").read_text()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"id,email\ncus_1,a@example.com\n", "not JSON"),
        (b"", "empty"),
        (b'{"object": "list", "has_more": false}', "`data` array"),
        (b"[" + orjson.dumps(customer(1)) + b", {broken", "not valid JSON after 1 objects"),
        (one_per_line([customer(1)], closing=b"] oops"), "not valid JSON after 1 objects"),
        (one_per_line([customer(1)], b'{"object": "list", "data": ['), "not valid JSON after 1"),
    ],
)
def test_file_that_is_not_stripe_json_fails_naming_the_file(conn, tmp_path, content, reason):
    path = tmp_path / "customers.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        ingest_file(conn, CUSTOMERS, path)
    assert str(path) in str(caught.value)
    assert reason in str(caught.value)
    assert count(conn, Customer) == 0  # nothing of it is written


def test_rerun_repairs_a_typed_column_changed_by_hand(conn):
    ingest(conn, CHARGES, [charge(1, 1, 1000)])
    conn.execute(text("UPDATE charges SET amount = 1"))
    result = ingest(conn, CHARGES, [charge(1, 1, 1000)])
    assert result.stats["charges"].updated == 1
    assert conn.execute(select(Charge.amount)).scalar_one() == 1000


@pytest.fixture()
def committed(engine):
    """A connection whose batches really commit (several writers need their own connections);
    the tables are emptied afterwards."""
    with engine.connect() as connection:
        yield connection
    with engine.begin() as cleanup:
        cleanup.exec_driver_sql(
            "TRUNCATE products, prices, customers, payment_methods, subscriptions, "
            "subscription_items, invoices, invoice_lines, payment_intents, charges CASCADE"
        )


def test_parallel_writers_load_every_row_once(committed, monkeypatch):
    monkeypatch.setattr(ingest_module, "CELLS_PER_BATCH", 100)  # many small batches
    # charges of customers that do not exist yet: both writers create placeholders at once
    charges = [charge(n, n % 50, 100 + n) for n in range(1, 1201)]
    # 300 listed twice, the copy in the very next batch: the two writers race for those ids
    for block in range(3, 0, -1):
        at = block * 100
        charges[at:at] = charges[at - 100 : at]
    result = ingest(committed, CHARGES, charges, writers=2)
    stats = result.stats["charges"]
    assert stats.read == 1500
    assert (stats.inserted, stats.updated + stats.unchanged, stats.rejected) == (1200, 300, 0)
    assert stats.placeholders == 50
    assert committed.execute(select(func.count()).select_from(Charge)).scalar_one() == 1200
    placeholders = committed.execute(
        select(func.count()).select_from(Customer).where(Customer.is_placeholder)
    ).scalar_one()
    assert placeholders == 50
    again = ingest(committed, CHARGES, charges, writers=2)
    assert again.stats["charges"].unchanged == 1500


def test_writer_error_reaches_the_caller(committed, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest_module, "_write_batch", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(committed, CUSTOMERS, [customer(1)], writers=2)


@pytest.mark.parametrize(("mode", "kept"), [("upsert", "second"), ("skip", "first")])
def test_parallel_writers_keep_the_sources_order_for_an_id(committed, monkeypatch, mode, kept):
    monkeypatch.setattr(ingest_module, "CELLS_PER_BATCH", 100)  # 100-row batches
    for attempt in range(5):  # a race would show in some runs, not all
        first, second = customer(7), customer(7)
        first["name"], second["name"] = "first", "second"
        # the two versions sit at the end of one batch and the start of the next
        objects = [customer(n) for n in range(100, 199)] + [first, second]
        objects += [customer(n) for n in range(200, 400)]
        ingest(committed, CUSTOMERS, objects, mode=mode, writers=2)
        name = committed.execute(
            select(Customer.name).where(Customer.id == first["id"])
        ).scalar_one()
        assert name == kept, f"attempt {attempt}"
        committed.execute(text("TRUNCATE customers CASCADE"))
        committed.commit()


def test_rerun_restores_an_invoice_line_lost_in_the_database(conn):
    ingest(conn, CUSTOMERS, [customer(1)])
    ingest(conn, BY_NAME["invoices"], [invoice(1, 1, 7, 1, 1000)])
    conn.execute(text("DELETE FROM invoice_lines"))
    result = ingest(conn, BY_NAME["invoices"], [invoice(1, 1, 7, 1, 1000)])
    assert result.stats["invoices"].unchanged == 1
    assert result.stats["invoice_lines"].inserted == 1
    assert count(conn, InvoiceLine) == 1


def test_awkward_characters_survive_the_copy_path(conn):
    obj = customer(1)
    obj["description"] = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, é ✓'
    obj["metadata"] = {"path": "C:\\temp\\new", "quote": '"', "nl": "a\nb"}
    ingest(conn, CUSTOMERS, [obj])
    stored = conn.execute(select(Customer.description, Customer.metadata_, Customer.raw)).one()
    assert stored.description == obj["description"]
    assert stored[1] == obj["metadata"]
    assert stored.raw == obj


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("livemode", "false", "expected true or false"),
        ("email", {"address": "a@example.com"}, "expected text"),
        ("delinquent", 0, "expected true or false"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(conn, tmp_path, field, value, reason):
    obj = customer(1)
    obj[field] = value
    with RejectSink(tmp_path) as rejects:
        result = ingest(conn, CUSTOMERS, [obj, customer(2)], rejects=rejects)
    assert (result.stats["customers"].inserted, result.stats["customers"].rejected) == (1, 1)
    assert reason in (tmp_path / "customers.rejects.jsonl").read_text()


@pytest.mark.parametrize(("has_more", "lines_kept"), [(False, 1), (True, 2)])
def test_lines_missing_from_a_list_cut_short_are_kept(conn, has_more, lines_kept):
    ingest(conn, CUSTOMERS, [customer(1)])
    full = invoice(1, 1, 7, 1, 1000)
    extra_line = copy.deepcopy(full["lines"]["data"][0])
    extra_line["id"] = "il_second"
    full["lines"]["data"].append(extra_line)
    ingest(conn, BY_NAME["invoices"], [full])
    first_page = invoice(1, 1, 7, 1, 1000)  # the same invoice, its lines list one line
    first_page["lines"]["has_more"] = has_more
    first_page["status"] = "void"  # and it changed, so its items are written again
    ingest(conn, BY_NAME["invoices"], [first_page])
    assert count(conn, InvoiceLine) == lines_kept


def test_a_listing_older_than_the_row_leaves_the_rows_items_alone(conn):
    # an event at 10:00:05 added an item; a listing that began at 10:00:04 (read before it)
    # must keep the parent's state and its items, not delete the item it never saw
    from datetime import UTC, datetime

    from app.load.ingest import IngestResult, load_rows
    from app.load.rows import formats_for, transform_object

    subscriptions = BY_NAME["subscriptions"]
    listed = subscription(1, 1, 1)
    newer = copy.deepcopy(listed)
    newer["items"]["data"].append(copy.deepcopy(newer["items"]["data"][0]) | {"id": "si_added"})
    event_time = datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    row = transform_object(
        subscriptions, newer, None, formats_for(subscriptions), event_time, account=DEFAULT_ACCOUNT
    )
    load_rows(conn, subscriptions, [row], IngestResult("subscriptions"), account=DEFAULT_ACCOUNT)

    for began in (event_time.replace(second=4), event_time):  # an earlier second, the same one
        result = ingest(conn, subscriptions, [listed], state_at=began)
        assert result.stats["subscriptions"].updated == 0
        items = (
            conn.execute(select(SubscriptionItem.id).order_by(SubscriptionItem.id)).scalars().all()
        )
        assert items == ["si_00000000000001", "si_added"], began
        raw = conn.execute(text("SELECT raw FROM subscriptions")).scalar_one()
        assert len(raw["items"]["data"]) == 2
