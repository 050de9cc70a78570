"""metrics: turns every funnel event into live, exact figures."""
