# What a user reads after apply (and what bench/aws.sh ignores: it checks
# the emulator itself, by tag).

output "vpc_id" {
  value = aws_vpc.shop.id
}

output "control_plane_ip" {
  value = aws_eip.control_plane.public_ip
}

output "load_balancer_dns" {
  value = aws_lb.shop.dns_name
}

output "stop_schedule" {
  value = "${aws_scheduler_schedule.stop.schedule_expression} ${aws_scheduler_schedule.stop.schedule_expression_timezone}"
}
