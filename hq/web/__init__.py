"""HQ's web service for customers: card landing, claims, campaign links, my coupons."""
