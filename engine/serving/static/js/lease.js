// The lease on the current item: a countdown, heartbeats every lease_seconds / 3,
// and a release when the person leaves the item (or the page: fetch keepalive,
// since sendBeacon cannot send the Authorization header).

import { ApiError, post } from "./api.js";

export class LeaseKeeper {
  constructor(element, onError) {
    this.element = element;
    this.onError = onError;
    this.lease = null;
    this.timers = [];
  }

  start(lease) {
    this.stop();
    this.lease = lease;
    this.deadline = Date.now() + lease.lease_seconds * 1000;
    const every = Math.max(1000, (lease.lease_seconds * 1000) / 3);
    this.timers.push(setInterval(() => this.heartbeat(), every));
    this.timers.push(setInterval(() => this.show(), 1000));
    this.show();
  }

  stop() {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  show() {
    if (!this.lease) {
      this.element.textContent = "";
      delete this.element.dataset.expiresIn;
      return;
    }
    const left = Math.max(0, Math.round((this.deadline - Date.now()) / 1000));
    this.element.dataset.expiresIn = String(left);
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    this.element.textContent = left > 0 ? `lease ${clock}` : "lease expired";
    this.element.classList.toggle("low", left < 60);
  }

  async heartbeat() {
    if (!this.lease) return;
    const itemId = this.lease.item_id;
    try {
      const { data } = await post(`/queue/${encodeURIComponent(itemId)}/heartbeat`);
      if (this.lease && this.lease.item_id === itemId) {
        this.deadline = Date.now() + data.lease_seconds * 1000;
        this.show();
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) this.stop();
      this.onError(err);
    }
  }

  // Give the lease back; with keepalive the request outlives the page.
  async release({ keepalive = false } = {}) {
    const lease = this.lease;
    this.stop();
    this.lease = null;
    this.show();
    if (!lease) return;
    try {
      await post(`/queue/${encodeURIComponent(lease.item_id)}/release`, {}, { keepalive });
    } catch (err) {
      if (!keepalive) this.onError(err);
    }
  }
}
