"""Browser tests of the fan's page (/) and the operator's console (/console).

Headless Debian Chromium through Selenium, against a running app with the demo data:

    ADMIN_KEY=... [BASE_URL=http://127.0.0.1:3000] [SCREENSHOTS=dir] \
        python -m unittest -v e2e/browser/test_pages.py

Every test makes queues of its own (fresh ids) through the admin API, so runs neither
disturb each other nor the `default` queue. Waits are explicit: on the page's state, or on
the API's own pacing (pollAfterMs) where a test admits a fan by API.
"""

import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE_URL = os.environ.get('BASE_URL', 'http://127.0.0.1:3000').rstrip('/')
ADMIN_KEY = os.environ.get('ADMIN_KEY', '')
MYSQL_URL = os.environ.get('MYSQL_URL', 'mysql://ticketing:ticketing@127.0.0.1:13306/ticketing')
SCREENSHOTS = os.environ.get('SCREENSHOTS', '')

# Chromium on a closed machine: without the background-networking flags it reaches for
# Google hosts and stalls.
CHROMIUM_FLAGS = (
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--window-size=1280,1000',
)

# Demo users 1..1000 (500,000 won each, a seat is 50,000). A run takes a few consecutive
# ids from a start that moves 5 a second, so repeated runs spread their purchases.
_users = itertools.count(int(time.time()) * 5)


def fresh_user():
    return str(1 + next(_users) % 1000)


def setUpModule():
    if not ADMIN_KEY:
        raise RuntimeError('ADMIN_KEY is required (source .state/secrets.env)')
    status, _ = call('GET', '/health')
    if status != 200:
        raise RuntimeError(f'the app at {BASE_URL} is not healthy ({status})')


# ---- the API, for set-up -----------------------------------------------------------------

def call(method, path, body=None, token=None):
    """(status, JSON body) of an API request; errors are answers too, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE_URL + path, data=data, method=method)
    request.add_header('Accept', 'application/json')
    if data is not None:
        request.add_header('Content-Type', 'application/json')
    if token:
        request.add_header('Authorization', f'Bearer {token}')
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b'null')
    except ValueError:
        return status, raw.decode(errors='replace')


def make_queue(prefix, **settings):
    """A new queue with these settings (ratePerSec, maxActive, ...); returns its id."""
    queue_id = f'{prefix}-{uuid.uuid4().hex[:12]}'
    status, body = call('PUT', f'/api/admin/queue?queueId={queue_id}', settings, ADMIN_KEY)
    assert status == 200, f'creating queue {queue_id}: {status} {body}'
    return queue_id


def admit_by_api(queue_id, user_id, timeout=30):
    """Joins and polls at the server's pace until admitted; returns the pass."""
    status, ticket = call('POST', '/api/queue/tokens', {'userId': user_id, 'queueId': queue_id})
    assert status in (200, 201), f'join: {status} {ticket}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call('GET', '/api/queue/status', token=ticket['token'])
        if status == 200 and body['status'] == 'ACTIVE':
            return body['pass']
        waiting = status == 200 and body['status'] == 'WAITING'
        assert waiting or status in (429, 503), f'status: {status} {body}'
        time.sleep(body['pollAfterMs'] / 1000 if status == 200 else 1)
    raise AssertionError(f'user {user_id} was not admitted to {queue_id} in {timeout} s')


def one_seat_concert():
    """A new concert with one date of one seat (ids as the seed makes them), straight into
    MySQL: the API creates no concerts. Returns (concert id, schedule id, seat id)."""
    url = urllib.parse.urlparse(MYSQL_URL)
    sql = (
        'SET @c = 1 + GREATEST((SELECT COALESCE(MAX(id), 0) FROM concerts),'
        ' (SELECT COALESCE(MAX(id), 0) FROM users));'
        "INSERT INTO concerts (id, title, artist, venue)"
        " VALUES (@c, CONCAT('Concert ', @c), 'Browser Band', 'Small Hall');"
        'INSERT INTO schedules (id, concert_id, starts_at, total_seats)'
        ' VALUES (@c * 100 + 1, @c, UTC_TIMESTAMP(3) + INTERVAL 30 DAY, 1);'
        "INSERT INTO seats (id, schedule_id, seat_no, label, price)"
        " VALUES ((@c * 100 + 1) * 10000 + 1, @c * 100 + 1, 1, 'A1', 50000);"
        'SELECT @c;')
    concert = int(subprocess.run(
        ['mariadb', '--no-defaults', '--batch', '--skip-column-names', f'--host={url.hostname}',
         f'--port={url.port}', f'--user={url.username}', f'--password={url.password}',
         url.path.lstrip('/'), '-e', sql],
        check=True, capture_output=True, text=True, timeout=30).stdout.split()[-1])
    schedule = concert * 100 + 1
    return concert, schedule, schedule * 10_000 + 1


def until(what, check, timeout=30):
    """Polls `check` (by API) until it is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {timeout} s')
        time.sleep(0.5)


# ---- the browser ---------------------------------------------------------------------------

def shot(driver, name):
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        driver.save_screenshot(os.path.join(SCREENSHOTS, f'{name}.png'))


def wait(driver, seconds=20):
    return WebDriverWait(driver, seconds, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])


def visible(driver, css, seconds=20):
    return wait(driver, seconds).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def classes(element):
    return (element.get_attribute('class') or '').split()


def uncaught_errors(driver):
    """The console's errors other than failed requests (a 409 is logged as one)."""
    try:
        entries = driver.get_log('browser')
    except Exception:  # a driver without the log endpoint
        return []
    return [entry['message'] for entry in entries
            if entry['level'] == 'SEVERE' and 'Failed to load resource' not in entry['message']]


def join(driver, queue_id, user_id):
    driver.get(f'{BASE_URL}/?queue={queue_id}')
    field = wait(driver).until(EC.element_to_be_clickable((By.ID, 'user-id')))
    field.clear()
    field.send_keys(user_id)
    driver.find_element(By.ID, 'join').click()


def wait_admitted(driver, seconds=60):
    visible(driver, '#concerts [data-concert-id]', seconds)


def open_seat_map(driver, concert_id=None, schedule_id=None):
    """Opens the given date's seat map, or the first concert's first date with open seats
    (then the next concert's); returns (concert id, schedule id)."""
    concerts = [button.get_attribute('data-concert-id')
                for button in driver.find_elements(By.CSS_SELECTOR, '#concerts [data-concert-id]')]
    for concert in [concert_id] if concert_id else concerts:
        driver.find_element(By.CSS_SELECTOR, f'#concerts [data-concert-id="{concert}"]').click()
        visible(driver, f'#schedules[data-concert-id="{concert}"] [data-schedule-id]')
        dates = driver.find_elements(By.CSS_SELECTOR, '#schedules [data-schedule-id]')
        if schedule_id:
            chosen = [d for d in dates if d.get_attribute('data-schedule-id') == schedule_id]
        else:
            chosen = [d for d in dates if int(d.get_attribute('data-free')) > 0]
        if chosen:
            schedule = chosen[0].get_attribute('data-schedule-id')
            chosen[0].click()
            visible(driver, f'#seat-map[data-schedule-id="{schedule}"] [data-seat-id]')
            return concert, schedule
    raise AssertionError('no date has open seats; reseed with infra/mysql/seed demo --reset')


def free_seat(driver, seat_id=None):
    css = f'#seat-map [data-seat-id="{seat_id}"].free' if seat_id else '#seat-map .free'
    return wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)))


def settled(driver):
    """The payment's result once it has one (paid or failed)."""
    result = driver.find_element(By.ID, 'result')
    return result.is_displayed() and {'paid', 'failed'} & set(classes(result)) and result


def seat(driver, seat_id):
    return driver.find_element(By.CSS_SELECTOR, f'#seat-map [data-seat-id="{seat_id}"]')


def pay_in_checkout(test, driver):
    """Pays the hold in the checkout view; the gateway simulator declines about 1 in 20, and
    the page offers another attempt. Returns the result once paid."""
    button = 'pay'
    for _attempt in range(5):
        driver.find_element(By.ID, button).click()
        result = wait(driver, 30).until(settled)
        if 'paid' in classes(result):
            return result
        test.assertTrue(driver.find_element(By.ID, 'retry').is_displayed(),
                        f'a failed payment offers no retry: {result.text}')
        button = 'retry'
    raise AssertionError(f'five payments failed: {result.text}')


class Pages(unittest.TestCase):
    def browser(self):
        """A fresh Chromium with a profile of its own, closed after the test."""
        profile = tempfile.mkdtemp(prefix='chromium-')
        self.addCleanup(shutil.rmtree, profile, ignore_errors=True)
        options = webdriver.ChromeOptions()
        options.binary_location = '/usr/bin/chromium'
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f'--user-data-dir={profile}')
        options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
        self.addCleanup(driver.quit)
        return driver

    def test_a_fan_goes_from_join_to_a_paid_seat(self):
        queue = make_queue('fan', ratePerSec=50, maxActive=100)
        fan = self.browser()
        join(fan, queue, fresh_user())
        wait_admitted(fan)
        open_seat_map(fan)
        chosen = free_seat(fan)
        label = chosen.get_attribute('title').split(' · ')[0]
        chosen.click()
        self.assertIn('selected', classes(chosen))
        shot(fan, '02-seat-map')

        fan.find_element(By.ID, 'hold').click()
        visible(fan, '#checkout')
        self.assertRegex(visible(fan, '#hold-countdown').text, r'^\d+:\d\d$')
        self.assertIn(label, fan.find_element(By.ID, 'hold-summary').text)

        result = pay_in_checkout(self, fan)
        self.assertIn(label, result.text)
        self.assertIn(result.get_attribute('data-payment-id'), result.text)
        visible(fan, '#balance')
        shot(fan, '03-paid')
        self.assertEqual(uncaught_errors(fan), [])

    def test_a_fan_who_comes_before_a_scheduled_opening_waits_for_the_draw_then_gets_in(self):
        opens_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=15)
        queue = make_queue('draw', ratePerSec=50, maxActive=100,
                           opensAt=opens_at.isoformat(timespec='milliseconds').replace('+00:00', 'Z'))
        fan = self.browser()
        join(fan, queue, fresh_user())
        note = visible(fan, '#gathering')
        self.assertRegex(note.text, r'entry 1 of 1')
        self.assertEqual(fan.find_element(By.ID, 'position').text, '–')
        time.sleep(2)  # a head read has come in by now, and still nobody is let in
        self.assertFalse(fan.find_element(By.ID, 'pace').is_displayed())
        shot(fan, '05-gathering')
        wait_admitted(fan, 40)
        self.assertEqual(uncaught_errors(fan), [])

    def test_two_fans_race_for_one_seat_and_the_loser_sees_the_clean_message(self):
        queue = make_queue('race', ratePerSec=50, maxActive=100)
        winner, loser = self.browser(), self.browser()
        join(winner, queue, fresh_user())
        join(loser, queue, fresh_user())
        wait_admitted(winner)
        wait_admitted(loser)
        concert, schedule = open_seat_map(winner)
        open_seat_map(loser, concert, schedule)
        seat_id = free_seat(winner).get_attribute('data-seat-id')
        free_seat(winner, seat_id).click()
        free_seat(loser, seat_id).click()

        winner.find_element(By.ID, 'hold').click()
        visible(winner, '#checkout')
        loser.find_element(By.ID, 'hold').click()

        # All or none: nothing held, the seat shown taken, the API's message shown.
        wait(loser).until(lambda d: 'conflict' in classes(seat(d, seat_id)))
        lost = seat(loser, seat_id)
        self.assertIn('taken', classes(lost))
        self.assertFalse(lost.is_enabled())
        message = visible(loser, '#error').text
        self.assertTrue(message.strip())
        self.assertNotIn('The server answered', message)
        self.assertFalse(loser.find_element(By.ID, 'checkout').is_displayed())
        # No crash: the loser can go on choosing.
        other = free_seat(loser)
        other.click()
        self.assertIn('selected', classes(other))
        self.assertTrue(loser.find_element(By.ID, 'hold').is_enabled())
        shot(loser, '04-race-loser')
        self.assertEqual(uncaught_errors(loser), [])

    def test_fans_told_sold_out_join_the_waitlist_and_a_seat_back_is_declined_then_paid(self):
        concert, schedule, seat_id = one_seat_concert()
        queue = make_queue('waitlist', ratePerSec=50, maxActive=100, concertId=concert)
        settings = f'/api/admin/queue?queueId={queue}'
        buyer = admit_by_api(queue, fresh_user())
        status, held = call('POST', '/api/reservations',
                            {'scheduleId': schedule, 'seatIds': [seat_id]}, buyer)
        self.assertEqual(status, 201, held)
        until('the bridge counts the concert sold out',
              lambda: call('GET', settings, token=ADMIN_KEY)[1].get('holdableSeats') == 0)

        # Told sold out, two fans put their names on the list, in this order.
        first, second = self.browser(), self.browser()
        for fan, ahead in ((first, '0'), (second, '1')):
            join(fan, queue, fresh_user())
            self.assertIn('Sold out', visible(fan, '#sold-out').text)
            visible(fan, '#waitlist-join').click()
            visible(fan, '#waitlist')
            wait(fan).until(lambda d, n=ahead: d.find_element(By.ID, 'waitlist-ahead').text == n)
        shot(second, '07-waitlist')

        # The buyer lets the seat go: it is offered to the first fan, who declines it.
        status, body = call('DELETE', f'/api/reservations/{held["reservationId"]}', token=buyer)
        self.assertEqual(status, 200, body)
        visible(first, '#checkout', 30)
        self.assertEqual(first.find_element(By.ID, 'checkout-title').text,
                         'A seat came back for you')
        self.assertIn('A1', first.find_element(By.ID, 'hold-summary').text)
        self.assertRegex(first.find_element(By.ID, 'hold-countdown').text, r'^\d+:\d\d$')
        shot(first, '08-waitlist-offer')
        decline = first.find_element(By.ID, 'release')
        self.assertEqual(decline.text, 'Decline the seat')
        decline.click()
        self.assertEqual(visible(first, '#ended-title').text, 'You let the seat go')

        # Declined, it goes on to the second fan, who pays it.
        visible(second, '#checkout', 30)
        self.assertIn('A1', pay_in_checkout(self, second).text)
        shot(second, '09-waitlist-paid')
        for fan in (first, second):
            self.assertEqual(uncaught_errors(fan), [])

    def test_the_console_changes_a_queues_rate_and_the_fans_page_shows_it(self):
        queue = make_queue('pace', ratePerSec=1, maxActive=1)
        admit_by_api(queue, fresh_user())  # the queue's only slot is taken now
        fan = self.browser()
        join(fan, queue, fresh_user())
        visible(fan, '#waiting')
        wait(fan).until(lambda d: d.find_element(By.ID, 'rate').text == '1')
        shot(fan, '01-fan-waiting')

        console = self.browser()
        console.get(f'{BASE_URL}/console')
        visible(console, '#admin-key').send_keys(f'not-the-key-{uuid.uuid4().hex}')
        console.find_element(By.ID, 'connect').click()
        self.assertIn('refused', visible(console, '#error').text)

        visible(console, '#admin-key').send_keys(ADMIN_KEY)
        console.find_element(By.ID, 'connect').click()
        row = visible(console, f'#queues tr[data-queue-id="{queue}"]')
        rate = row.find_element(By.CSS_SELECTOR, 'input.rate')
        wait(console).until(lambda _: rate.get_attribute('value') == '1')
        rate.clear()
        rate.send_keys('7')
        row.find_element(By.CSS_SELECTOR, 'button.apply').click()
        wait(console).until(lambda _: rate.get_attribute('data-server') == '7')
        _, overview = call('GET', f'/api/admin/queue?queueId={queue}', token=ADMIN_KEY)
        self.assertEqual(overview['ratePerSec'], 7)
        shot(console, '05-console')

        wait(fan, 10).until(lambda d: d.find_element(By.ID, 'rate').text == '7')
        self.assertTrue(fan.find_element(By.ID, 'waiting').is_displayed())
        shot(fan, '06-fan-sees-new-rate')
        self.assertEqual(uncaught_errors(fan), [])
        self.assertEqual(uncaught_errors(console), [])

    def test_the_fans_first_view_is_light_and_loads_only_from_its_own_origin(self):
        fan = self.browser()
        fan.get(f'{BASE_URL}/')
        visible(fan, '#join')
        loaded = fan.execute_script(
            "return performance.getEntriesByType('navigation')"
            ".concat(performance.getEntriesByType('resource'))"
            ".map((e) => [e.name, e.decodedBodySize, e.transferSize]);")
        for name, _size, _sent in loaded:
            self.assertTrue(name.startswith(f'{BASE_URL}/'), name)
        body = sum(size for _name, size, _sent in loaded)
        sent = sum(sent for _name, _size, sent in loaded)
        print(f"\nthe fan's first view: {len(loaded)} files, {body} bytes of content, "
              f"{sent} bytes transferred (headers included)", file=sys.stderr)
        self.assertLess(body, 50_000, loaded)
        # A Content-Security-Policy violation (an inline style or script) is logged as one.
        self.assertEqual(uncaught_errors(fan), [])


if __name__ == '__main__':
    unittest.main()
